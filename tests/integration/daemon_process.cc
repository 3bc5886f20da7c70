#include "nlohmann/json.hpp"
#include "integration/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <httplib.h>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

#include "fairserve/tenancy/api_key.h"
#include "testing/test_dir.h"

namespace fairserve {
namespace testing_util {
namespace fs = std::filesystem;

std::vector<float> RandomFloats(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = dist(gen);
  return v;
}

inference::ModelInferRequest FloatRequest(const std::string& model,
                                          const std::vector<float>& data,
                                          std::vector<int64_t> shape, const std::string& input) {
  inference::ModelInferRequest r;
  r.set_model_name(model);
  r.set_id("req-42");
  auto* in = r.add_inputs();
  in->set_name(input);
  in->set_datatype("FP32");
  for (int64_t d : shape) in->add_shape(d);
  r.add_raw_input_contents(std::string(reinterpret_cast<const char*>(data.data()),
                                       data.size() * sizeof(float)));
  return r;
}

std::string TestConfigYaml(const std::string& extra_tenant_yaml, const std::string& extra_yaml) {
  std::ostringstream y;
  y << "server: {listen_address: 127.0.0.1, grpc_port: 0, http_port: 0, data_dir: data, "
       "drain_timeout_s: 10}\n"
    << "model_repository: " << TEST_MODELS_DIR << "\n"
    << "scheduler: {workers: 1, intra_op_threads: 1}\n"
    << "tenants:\n"
    << "  - id: acme\n"
    << "    api_keys: [\"" << HashApiKey(kAcmeKey) << "\"]\n"
    << "  - id: globex\n"
    << "    api_keys: [\"" << HashApiKey(kGlobexKey) << "\"]\n"
    << "    models: [add_one, mlp]\n"
    << extra_tenant_yaml << extra_yaml;
  return y.str();
}

DaemonProcess::DaemonProcess(const std::string& config_yaml, const std::vector<std::string>& args) {
  char tmpl[] = "/tmp/fairserve-test-XXXXXX";
  dir_ = mkdtemp(tmpl);
  std::string config = dir_ + "/config.yaml";
  std::ofstream(config) << config_yaml;
  std::string ready = dir_ + "/ready.json";
  std::string log = dir_ + "/daemon.log";

  std::vector<std::string> argv_s = {FAIRSERVE_BIN, "--config", config, "--ready-file", ready};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv;
    for (std::string& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < until) {
    std::ifstream in(ready);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    // Written whole (renamed into place), so it is complete or absent.
    nlohmann::json ports = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (ports.is_object() && ports.contains("grpc_port") && ports.contains("http_port")) {
      grpc_port_ = ports["grpc_port"].get<int>();
      http_port_ = ports["http_port"].get<int>();
      return;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -pid_ - 1;  // exited: remember how, for WaitExit
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) Stop(SIGKILL);
  testing_util::RemoveTestDir(dir_);
}

std::string DaemonProcess::grpc_address() const {
  return "127.0.0.1:" + std::to_string(grpc_port_);
}

int DaemonProcess::WaitExit(double timeout_s) {
  if (pid_ < 0) return exit_status_;
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < until) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -pid_ - 1;
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_status_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

int DaemonProcess::Stop(int signal, double timeout_s) {
  if (pid_ < 0) return exit_status_;
  kill(pid_, signal);
  int code = WaitExit(timeout_s);
  if (code == -1) {
    kill(pid_, SIGKILL);
    WaitExit(10);
  }
  return code;
}

std::string DaemonProcess::Log() const {
  std::ifstream in(dir_ + "/daemon.log");
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

namespace {

// Calls fn(series, value) for each sample line of a Prometheus text page
// (`series value`, no timestamps here); comment lines are skipped.
template <typename Fn>
void ForEachSample(absl::string_view text, Fn fn) {
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    size_t space = line.rfind(' ');
    if (line[0] == '#' || space == absl::string_view::npos) continue;
    fn(line.substr(0, space), std::stod(std::string(line.substr(space + 1))));
  }
}

}  // namespace

double MetricIn(const std::string& text, const std::string& series) {
  double found = 0;
  bool seen = false;
  ForEachSample(text, [&](absl::string_view s, double v) {
    if (seen || s != series) return;
    found = v;
    seen = true;
  });
  return found;
}

double SumMetricIn(const std::string& text, const std::string& name) {
  const std::string labelled = name + "{";
  double sum = 0;
  ForEachSample(text, [&](absl::string_view s, double v) {
    if (absl::StartsWith(s, labelled)) sum += v;
  });
  return sum;
}

double Metric(const DaemonProcess& d, const std::string& series) {
  httplib::Client http("127.0.0.1", d.http_port());
  auto res = http.Get("/metrics");
  if (!res) return -1;
  return MetricIn(res->body, series);
}

void SetTestDeadline(grpc::ClientContext* ctx, int seconds) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

bool WaitFor(const std::function<bool()>& done, double seconds) {
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::shared_ptr<grpc::Channel> OwnConnection(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

Client::Client(const DaemonProcess& d)
    : channel_(OwnConnection(d.grpc_address())),
      stub_(inference::GRPCInferenceService::NewStub(channel_)) {}

grpc::Status Client::Infer(const std::string& key, const std::string& model, int width) {
  inference::ModelInferRequest req = FloatRequest(model, std::vector<float>(width), {1, width});
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-api-key", key);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  inference::ModelInferResponse resp;
  return stub_->ModelInfer(&ctx, req, &resp);
}

int Client::Succeeded(const std::string& key, int n) {
  int ok = 0;
  for (int i = 0; i < n; ++i) ok += Infer(key).ok();
  return ok;
}

}  // namespace testing_util
}  // namespace fairserve
