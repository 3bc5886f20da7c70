// The REST front end against gRPC, on the same daemon in the same run:
// 1. add_one, one call at a time: p50/p99 over REST (JSON, keep-alive) and
//    gRPC;
// 2. mlp_large, 8 rows per request, 8 closed-loop clients: samples/s over
//    gRPC, REST with the binary tensor data extension, and REST with JSON
//    tensors.
// Every measurement is interleaved, `--reps` times; medians and ranges.
// Targets (benchmarks, not tests): REST binary >= 0.8x gRPC throughput on
// mlp_large; REST add_one p50 <= 1.5x gRPC's.

#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>

#include "bench_util.h"
#include "nlohmann/json.hpp"

namespace fs = fairserve::bench;

namespace {

// A REST infer caller on its own keep-alive connection.
std::function<bool()> RestCaller(int port, const std::string& model, std::string body,
                                 httplib::Headers headers) {
  auto client = std::make_shared<httplib::Client>("127.0.0.1", port);
  client->set_keep_alive(true);
  client->set_tcp_nodelay(true);  // as curl and Python's requests do
  client->set_read_timeout(60);
  const std::string path = "/v2/models/" + model + "/infer";
  headers.emplace("x-api-key", "bench-key");
  return [client, path, body = std::move(body), headers] {
    httplib::Result r = client->Post(path.c_str(), headers, body, "application/json");
    if (!r || r->status != 200) {
      std::fprintf(stderr, "REST call failed: %s\n",
                   r ? (std::to_string(r->status) + " " + r->body).c_str()
                     : httplib::to_string(r.error()).c_str());
      return false;
    }
    return true;
  };
}

std::vector<float> Floats(size_t n) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

std::string JsonBody(const std::string& input, int rows, int width, bool binary_output) {
  nlohmann::json in = {{"name", input}, {"datatype", "FP32"}, {"shape", {rows, width}},
                       {"data", Floats(static_cast<size_t>(rows) * width)}};
  nlohmann::json body = {{"inputs", {in}}};
  if (binary_output) body["parameters"] = {{"binary_data_output", true}};
  return body.dump();
}

// The binary tensor data extension: JSON header, then the raw input bytes.
std::pair<std::string, size_t> BinaryBody(const std::string& input, int rows, int width) {
  std::vector<float> x = Floats(static_cast<size_t>(rows) * width);
  nlohmann::json in = {{"name", input}, {"datatype", "FP32"}, {"shape", {rows, width}},
                       {"parameters", {{"binary_data_size", x.size() * sizeof(float)}}}};
  std::string header =
      nlohmann::json{{"inputs", {in}}, {"parameters", {{"binary_data_output", true}}}}.dump();
  std::string body = header;
  body.append(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float));
  return {body, header.size()};
}

double Throughput(const std::function<std::function<bool()>()>& make, int threads, int calls,
                  int rows) {
  auto t0 = fs::Clock::now();
  std::vector<double> done = fs::TimeConcurrent(make, threads, calls);
  double s = std::chrono::duration<double>(fs::Clock::now() - t0).count();
  if (done.size() != static_cast<size_t>(calls)) std::exit(1);
  return calls * rows / s;
}

}  // namespace

int main(int argc, char** argv) {
  fs::BenchFlags flags = fs::ParseBenchFlags(argc, argv, {"build/demo-models", 3, 2000});
  std::string bin = std::filesystem::path(argv[0]).parent_path() / "fairserve";
  std::string dir = "/tmp/fairserve-rest-bench-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::string config = fs::BenchConfig(flags.models, "    rate_limit: {requests_per_second: 0}\n");
  config.replace(config.find("http_port: -1"), 13, "http_port: 0");
  fs::Daemon d = fs::StartDaemon(bin, dir, config);
  std::printf("rest_bench: daemon pid %d, gRPC :%d, HTTP :%d; %d reps\n", d.pid, d.port,
              d.http_port, flags.reps);

  const std::string add_one_json = JsonBody("INPUT0", 1, 16, false);
  constexpr int kRows = 8, kWidth = 1024, kClients = 8;
  const std::string mlp_json = JsonBody("INPUT0", kRows, kWidth, false);
  auto [mlp_binary, header_len] = BinaryBody("INPUT0", kRows, kWidth);
  httplib::Headers binary_headers{{"Inference-Header-Content-Length", std::to_string(header_len)}};

  auto grpc_add_one = fs::Checked(fs::AddOneCaller(d.port));
  auto rest_add_one = RestCaller(d.http_port, "add_one", add_one_json, {});
  std::vector<fs::Stats> grpc_p, rest_p;
  std::vector<double> p50_ratio, grpc_tput, bin_tput, json_tput, bin_ratio, json_ratio;
  const int mlp_calls = std::max(200, flags.calls / 4);
  for (int r = 0; r < flags.reps; ++r) {
    for (int i = 0; i < 100; ++i) grpc_add_one(), rest_add_one();  // warm-up
    std::vector<double> g, h;
    for (int i = 0; i < flags.calls; ++i) {  // interleaved, call by call
      auto t0 = fs::Clock::now();
      if (!grpc_add_one()) return 1;
      g.push_back(fs::Ms(fs::Clock::now() - t0));
      t0 = fs::Clock::now();
      if (!rest_add_one()) return 1;
      h.push_back(fs::Ms(fs::Clock::now() - t0));
    }
    grpc_p.push_back(fs::Summarize(g));
    rest_p.push_back(fs::Summarize(h));
    p50_ratio.push_back(rest_p.back().p50 / grpc_p.back().p50);

    grpc_tput.push_back(Throughput(
        [&] { return fs::Checked(fs::ModelCaller(d.port, "mlp_large", kWidth, "bench-key", kRows)); },
        kClients, mlp_calls, kRows));
    bin_tput.push_back(Throughput(
        [&] { return RestCaller(d.http_port, "mlp_large", mlp_binary, binary_headers); },
        kClients, mlp_calls, kRows));
    json_tput.push_back(Throughput(
        [&] { return RestCaller(d.http_port, "mlp_large", mlp_json, {}); }, kClients, mlp_calls,
        kRows));
    bin_ratio.push_back(bin_tput.back() / grpc_tput.back());
    json_ratio.push_back(json_tput.back() / grpc_tput.back());
  }
  fs::StopDaemon(d);
  std::filesystem::remove_all(dir);
  fs::Report("add_one gRPC, one at a time", grpc_p);
  fs::Report("add_one REST JSON, one at a time", rest_p);
  fs::ReportRange("add_one p50 REST / gRPC (target <= 1.5)", p50_ratio, "x");
  fs::ReportRange("mlp_large gRPC, 8 rows x 8 clients", grpc_tput, "samples/s");
  fs::ReportRange("mlp_large REST binary, 8 rows x 8 clients", bin_tput, "samples/s");
  fs::ReportRange("mlp_large REST JSON, 8 rows x 8 clients", json_tput, "samples/s");
  fs::ReportRange("REST binary / gRPC (target >= 0.8)", bin_ratio, "x");
  fs::ReportRange("REST JSON / gRPC", json_ratio, "x");
  return 0;
}
