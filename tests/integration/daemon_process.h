#ifndef FAIRSERVE_TESTS_INTEGRATION_DAEMON_PROCESS_H_
#define FAIRSERVE_TESTS_INTEGRATION_DAEMON_PROCESS_H_

// Starts the real build/bin/fairserve as a child process on port 0 and reads
// the chosen ports back from its --ready-file.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "inference/grpc_service.grpc.pb.h"

namespace fairserve {
namespace testing_util {

// SHA-256 forms of the test keys, as the config stores them.
constexpr char kAcmeKey[] = "acme-demo-key";
constexpr char kGlobexKey[] = "globex-demo-key";

// A config with tenants acme (every model) and globex (add_one and mlp only),
// the test model repository, ports 0. `extra_tenant_yaml` is appended to the
// tenants list; `extra_yaml` to the file.
std::string TestConfigYaml(const std::string& extra_tenant_yaml = "",
                           const std::string& extra_yaml = "");

// Uniform random floats in [-1, 1), reproducible from `seed`.
std::vector<float> RandomFloats(size_t n, uint32_t seed);

// A ModelInfer request of one FP32 input sent as raw contents (id "req-42").
inference::ModelInferRequest FloatRequest(const std::string& model,
                                          const std::vector<float>& data,
                                          std::vector<int64_t> shape,
                                          const std::string& input = "INPUT0");

class DaemonProcess {
 public:
  // Writes `config_yaml` to a fresh temp dir and starts the daemon with it
  // plus `args`. Waits until it serves (or exits).
  explicit DaemonProcess(const std::string& config_yaml,
                         const std::vector<std::string>& args = {});
  ~DaemonProcess();

  bool serving() const { return grpc_port_ > 0; }
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  std::string grpc_address() const;
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }

  // Sends `signal` and waits for the exit; returns the exit status (or
  // 128+signal when killed), -1 on timeout.
  int Stop(int signal, double timeout_s = 30);
  // Waits for the process to exit by itself.
  int WaitExit(double timeout_s);
  // Everything the daemon logged so far.
  std::string Log() const;

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int http_port_ = 0;
  int exit_status_ = -1;
};

// The value of one series on the daemon's /metrics, e.g.
// `fairserve_queue_depth{tenant_id="acme"}`; 0 when absent, -1 when the
// scrape fails.
double Metric(const DaemonProcess& d, const std::string& series);

// The same, read from a Prometheus text page already fetched.
double MetricIn(const std::string& text, const std::string& series);

// The sum over every labelled series of metric `name` (`name{...} value`).
double SumMetricIn(const std::string& text, const std::string& name);

// Every test call carries a deadline, so a stall fails in seconds instead of
// at ctest's timeout.
void SetTestDeadline(grpc::ClientContext* ctx, int seconds = 30);

// Polls `done` every 20 ms for up to `seconds`.
bool WaitFor(const std::function<bool()>& done, double seconds = 20);

// A channel with a connection of its own (gRPC otherwise shares one
// connection among channels to the same address in a process), like a
// separate client machine would have.
std::shared_ptr<grpc::Channel> OwnConnection(const std::string& address);

// A blocking gRPC client of one daemon, on its own connection.
class Client {
 public:
  explicit Client(const DaemonProcess& d);
  // One ModelInfer of `model` with a [1, width] FP32 input of zeros.
  grpc::Status Infer(const std::string& key, const std::string& model = "add_one",
                     int width = 16);
  // How many of `n` sequential calls succeeded.
  int Succeeded(const std::string& key, int n);
  std::shared_ptr<grpc::Channel> channel() { return channel_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
};

}  // namespace testing_util
}  // namespace fairserve

#endif  // FAIRSERVE_TESTS_INTEGRATION_DAEMON_PROCESS_H_
