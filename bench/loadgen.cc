// fairserve-loadgen: an Open Inference Protocol load generator.
//
// Several tenants at once, each open-loop (Poisson arrivals at a rate) or
// closed-loop (N requests outstanding), each with its own key, model and
// batch size. Asynchronous gRPC (callback API), one connection per tenant.
// Reports per tenant: requests, errors by status, throughput, latency
// percentiles; as a table and as JSON.
//
//   fairserve-loadgen --address 127.0.0.1:8001 --duration 10 --warmup 2
//     --tenant name=victim,key=K1,model=mlp,batch=1,mode=open,rate=50
//     --tenant name=attacker,key=K2,model=mlp_large,batch=32,mode=closed,concurrency=32
//     --json out.json [--latencies-dir DIR]
//
// model=a+b+c sends to several models in turn (round robin).

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "inference/grpc_service.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
using inference::GRPCInferenceService;

struct TenantSpec {
  std::string name, key, model, mode = "closed";
  int64_t batch = 1;
  double rate = 10;
  int concurrency = 1;
};

struct TenantRun {
  TenantSpec spec;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<GRPCInferenceService::Stub> stub;
  std::vector<inference::ModelInferRequest> requests;  // one per model, used round robin
  std::atomic<uint64_t> next_model{0};
  std::atomic<int64_t> outstanding{0};
  std::atomic<int64_t> sent{0};
  std::mutex mu;
  std::vector<double> latencies_ms;       // measured window, OK only
  std::map<std::string, int64_t> status;  // measured window, all
};

std::atomic<bool> g_stop{false};
Clock::time_point g_measure_start, g_measure_end;

const char* CodeName(grpc::StatusCode c) {
  switch (c) {
    case grpc::OK: return "OK";
    case grpc::CANCELLED: return "CANCELLED";
    case grpc::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::NOT_FOUND: return "NOT_FOUND";
    case grpc::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::INTERNAL: return "INTERNAL";
    default: return "OTHER";
  }
}

bool ParseTenant(const std::string& text, TenantSpec* t) {
  std::stringstream ss(text);
  std::string kv;
  while (std::getline(ss, kv, ',')) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) return false;
    std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
    if (k == "name") t->name = v;
    else if (k == "key") t->key = v;
    else if (k == "model") t->model = v;
    else if (k == "mode") t->mode = v;
    else if (k == "batch") t->batch = std::stoll(v);
    else if (k == "rate") t->rate = std::stod(v);
    else if (k == "concurrency") t->concurrency = std::stoi(v);
    else return false;
  }
  return !t->name.empty() && !t->model.empty() && (t->mode == "open" || t->mode == "closed");
}

// Builds a request of `batch` rows of random data from `model`'s metadata.
bool BuildRequest(TenantRun& t, const std::string& model) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + t.spec.key);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  inference::ModelMetadataRequest mreq;
  mreq.set_name(model);
  inference::ModelMetadataResponse meta;
  grpc::Status s = t.stub->ModelMetadata(&ctx, mreq, &meta);
  if (!s.ok()) {
    std::fprintf(stderr, "loadgen: tenant %s: ModelMetadata(%s): %s\n", t.spec.name.c_str(),
                 model.c_str(), s.error_message().c_str());
    return false;
  }
  std::mt19937 gen(42);
  std::uniform_real_distribution<float> dist(0, 1);
  inference::ModelInferRequest request;
  request.set_model_name(model);
  for (const auto& in : meta.inputs()) {
    if (in.datatype() != "FP32") {
      std::fprintf(stderr, "loadgen: only FP32 inputs are generated (%s)\n", in.name().c_str());
      return false;
    }
    auto* tensor = request.add_inputs();
    tensor->set_name(in.name());
    tensor->set_datatype("FP32");
    int64_t n = 1;
    for (int d = 0; d < in.shape_size(); ++d) {
      int64_t dim = in.shape(d) < 0 ? (d == 0 ? t.spec.batch : 1) : in.shape(d);
      tensor->add_shape(dim);
      n *= dim;
    }
    std::vector<float> v(n);
    for (float& f : v) f = dist(gen);
    request.add_raw_input_contents(std::string(reinterpret_cast<char*>(v.data()), n * 4));
  }
  t.requests.push_back(std::move(request));
  return true;
}

void Send(TenantRun* t);

struct Call {
  TenantRun* tenant;
  grpc::ClientContext ctx;
  inference::ModelInferResponse response;
  Clock::time_point start;
};

void OnDone(Call* call, const grpc::Status& status) {
  TenantRun* t = call->tenant;
  Clock::time_point end = Clock::now();
  if (call->start >= g_measure_start && end <= g_measure_end) {
    std::lock_guard<std::mutex> lock(t->mu);
    t->status[CodeName(status.error_code())]++;
    if (status.ok()) {
      t->latencies_ms.push_back(std::chrono::duration<double, std::milli>(end - call->start).count());
    }
  }
  delete call;
  t->outstanding.fetch_sub(1);
  if (t->spec.mode == "closed" && !g_stop.load()) Send(t);
}

void Send(TenantRun* t) {
  auto* call = new Call{t, {}, {}, Clock::now()};
  call->ctx.AddMetadata("authorization", "Bearer " + t->spec.key);
  call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  t->outstanding.fetch_add(1);
  t->sent.fetch_add(1);
  const auto& request = t->requests[t->next_model.fetch_add(1) % t->requests.size()];
  t->stub->async()->ModelInfer(&call->ctx, &request, &call->response,
                               [call](grpc::Status s) { OnDone(call, s); });
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return NAN;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(std::ceil(p * v.size())) - (p > 0));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's Abseil checks lock order on every absl::Mutex lock, which
  // gRPC's client pays per call: off, as in the daemon, so the load
  // generator takes less of the cores it shares with the server.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::string address = "127.0.0.1:8001", json_path, latencies_dir;
  double duration = 10, warmup = 2;
  std::vector<std::unique_ptr<TenantRun>> tenants;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "loadgen: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--address") address = next();
    else if (a == "--duration") duration = std::stod(next());
    else if (a == "--warmup") warmup = std::stod(next());
    else if (a == "--json") json_path = next();
    else if (a == "--latencies-dir") latencies_dir = next();
    else if (a == "--tenant") {
      auto t = std::make_unique<TenantRun>();
      if (!ParseTenant(next(), &t->spec)) {
        std::fprintf(stderr, "loadgen: bad --tenant '%s' (name=,key=,model=,batch=,mode=open|closed,"
                             "rate=,concurrency=)\n", argv[i]);
        return 2;
      }
      tenants.push_back(std::move(t));
    } else {
      std::fprintf(stderr, "usage: fairserve-loadgen --address HOST:PORT --tenant SPEC... "
                           "[--duration S] [--warmup S] [--json FILE] [--latencies-dir DIR]\n");
      return a == "-h" || a == "--help" ? 0 : 2;
    }
  }
  if (tenants.empty()) {
    std::fprintf(stderr, "loadgen: give at least one --tenant\n");
    return 2;
  }
  for (auto& t : tenants) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // one connection per tenant
    args.SetMaxReceiveMessageSize(256 << 20);
    t->channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    t->stub = GRPCInferenceService::NewStub(t->channel);
    std::stringstream models(t->spec.model);
    std::string model;
    while (std::getline(models, model, '+')) {
      if (!BuildRequest(*t, model)) return 1;
    }
  }

  Clock::time_point start = Clock::now();
  g_measure_start = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warmup));
  g_measure_end = g_measure_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));
  std::vector<std::thread> senders;
  for (auto& tp : tenants) {
    TenantRun* t = tp.get();
    if (t->spec.mode == "closed") {
      for (int i = 0; i < t->spec.concurrency; ++i) Send(t);
      continue;
    }
    senders.emplace_back([t] {
      std::mt19937_64 gen(std::hash<std::string>()(t->spec.name));
      std::exponential_distribution<double> gap(t->spec.rate);
      Clock::time_point next = Clock::now();
      while (!g_stop.load() && Clock::now() < g_measure_end) {
        next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(gen)));
        std::this_thread::sleep_until(next);
        Send(t);
      }
    });
  }
  std::this_thread::sleep_until(g_measure_end);
  g_stop = true;
  for (auto& s : senders) s.join();
  auto drain_until = Clock::now() + std::chrono::seconds(30);
  for (auto& t : tenants) {
    while (t->outstanding.load() > 0 && Clock::now() < drain_until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  std::printf("%-12s %-10s %6s %9s %9s %9s %9s %9s %9s %10s  %s\n", "tenant", "model", "batch",
              "ok/s", "samples/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "mean ms", "status");
  nlohmann::ordered_json json = {{"duration_s", duration},
                                 {"tenants", nlohmann::ordered_json::array()}};
  for (auto& t : tenants) {
    std::lock_guard<std::mutex> lock(t->mu);
    std::sort(t->latencies_ms.begin(), t->latencies_ms.end());
    double ok = static_cast<double>(t->latencies_ms.size());
    double mean = 0;
    for (double l : t->latencies_ms) mean += l;
    mean = ok > 0 ? mean / ok : NAN;
    double p50 = Percentile(t->latencies_ms, 0.5), p90 = Percentile(t->latencies_ms, 0.9),
           p99 = Percentile(t->latencies_ms, 0.99), p999 = Percentile(t->latencies_ms, 0.999);
    std::string statuses;
    for (const auto& [code, n] : t->status) statuses += code + "=" + std::to_string(n) + " ";
    std::printf("%-12s %-10s %6lld %9.1f %9.1f %9.3f %9.3f %9.3f %9.3f %10.3f  %s\n",
                t->spec.name.c_str(), t->spec.model.c_str(), static_cast<long long>(t->spec.batch),
                ok / duration, ok * t->spec.batch / duration, p50, p90, p99, p999, mean,
                statuses.c_str());
    // NaN (no answers) is written as null.
    auto num = [](double v) -> nlohmann::ordered_json {
      if (std::isnan(v)) return nullptr;
      return v;
    };
    nlohmann::ordered_json status = nlohmann::ordered_json::object();
    for (const auto& [code, n] : t->status) status[code] = n;
    json["tenants"].push_back({{"name", t->spec.name},
                               {"model", t->spec.model},
                               {"batch", t->spec.batch},
                               {"mode", t->spec.mode},
                               {"ok", static_cast<int64_t>(ok)},
                               {"ok_per_s", num(ok / duration)},
                               {"samples_per_s", num(ok * t->spec.batch / duration)},
                               {"p50_ms", num(p50)},
                               {"p90_ms", num(p90)},
                               {"p99_ms", num(p99)},
                               {"p999_ms", num(p999)},
                               {"mean_ms", num(mean)},
                               {"status", status}});
    if (!latencies_dir.empty()) {
      std::ofstream out(latencies_dir + "/" + t->spec.name + ".txt");
      for (double l : t->latencies_ms) out << l << "\n";
    }
  }
  const std::string json_text = json.dump() + "\n";
  if (!json_path.empty()) std::ofstream(json_path) << json_text;
  return 0;
}
