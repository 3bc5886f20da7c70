// The only translation unit that includes torch headers (compile time on two
// cores matters): everything else sees fairserve::Executor.

#include <dlfcn.h>
#include <torch/script.h>
#include <ATen/Parallel.h>
#include <torch/csrc/jit/runtime/jit_exception.h>
#include <torch/version.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "fairserve/common/units.h"
#include "fairserve/models/executor.h"
#include "spdlog/spdlog.h"

#if FAIRSERVE_WITH_CUDA
#include "cuda_backend.h"
#endif

namespace fairserve {
namespace {

absl::StatusOr<at::ScalarType> ToTorch(DataType t) {
  switch (t) {
    case DataType::kBool: return at::kBool;
    case DataType::kUint8: return at::kByte;
    case DataType::kInt8: return at::kChar;
    case DataType::kInt16: return at::kShort;
    case DataType::kInt32: return at::kInt;
    case DataType::kInt64: return at::kLong;
    case DataType::kFp16: return at::kHalf;
    case DataType::kBf16: return at::kBFloat16;
    case DataType::kFp32: return at::kFloat;
    case DataType::kFp64: return at::kDouble;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("datatype ", DataTypeName(t), " has no libtorch equivalent"));
  }
}

// Where a model runs: the CPU, or CUDA device `cuda_index`.
struct Placement {
  torch::Device device = torch::kCPU;
  int cuda_index = -1;  // -1 on the CPU
  bool cuda() const { return cuda_index >= 0; }
};

std::string NoCudaReason() {
#if FAIRSERVE_WITH_CUDA
  return "the CUDA runtime sees no device";
#else
  return absl::StrCat("this fairserve was built against a CPU-only libtorch (", TORCH_VERSION,
                      "); build it against a CUDA libtorch (docs/gpu.md)");
#endif
}

absl::StatusOr<Placement> ParseDevice(const std::string& name) {
  if (name.empty()) return Placement{};
  absl::StatusOr<int> parsed = ParseDeviceName(name);
  if (!parsed.ok()) return parsed.status();
  if (*parsed < 0) return Placement{};
  const int index = *parsed;
  int count = CudaDeviceCount();
  if (index >= count) {
    return absl::FailedPreconditionError(
        count == 0 ? absl::StrCat("device ", name, " is not available: ", NoCudaReason())
                   : absl::StrCat("device ", name, " is not available: this machine has ", count,
                                  " CUDA device(s), cuda:0 to cuda:", count - 1));
  }
  return Placement{torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index)), index};
}

class TorchExecutor final : public Executor {
 public:
  TorchExecutor(ModelConfig config, torch::jit::Module module, std::vector<at::ScalarType> in,
                std::vector<at::ScalarType> out, Placement placement)
      : config_(std::move(config)), module_(std::move(module)), in_types_(std::move(in)),
        out_types_(std::move(out)), placement_(placement) {
    for (const auto& p : module_.parameters(/*recurse=*/true)) parameter_bytes_ += p.nbytes();
    for (const auto& b : module_.buffers(/*recurse=*/true)) parameter_bytes_ += b.nbytes();
    memory_bytes_ = parameter_bytes_;
  }

  absl::StatusOr<std::vector<Tensor>> Run(const std::vector<BatchInput>& inputs) override {
    return RunTimed(inputs, nullptr);
  }

  absl::StatusOr<std::vector<Tensor>> RunTimed(const std::vector<BatchInput>& inputs,
                                               RunTiming* timing) override {
    absl::StatusOr<std::vector<SplitOutput>> split = RunSplit(inputs, {}, timing);
    if (!split.ok()) return split.status();
    std::vector<Tensor> out(split->size());
    for (size_t i = 0; i < out.size(); ++i) {
      SplitOutput& s = (*split)[i];
      out[i] = Tensor{s.dtype, std::move(s.shape), std::move(s.parts.front())};
    }
    return out;
  }

  absl::StatusOr<std::vector<SplitOutput>> RunSplit(const std::vector<BatchInput>& inputs,
                                                    const std::vector<int64_t>& part_rows,
                                                    RunTiming* timing) override {
    if (inputs.size() != config_.inputs.size()) {
      return absl::InternalError(absl::StrCat("model '", config_.name, "' takes ",
                                              config_.inputs.size(), " inputs, got ",
                                              inputs.size()));
    }
    try {
      c10::InferenceMode guard;
      if (placement_.cuda()) return RunOnCuda(inputs, part_rows, timing);
      std::vector<c10::IValue> args;
      args.reserve(inputs.size());
      for (size_t i = 0; i < inputs.size(); ++i) args.emplace_back(MakeInput(inputs[i], i));
      c10::IValue result = module_.forward(std::move(args));
      absl::StatusOr<std::vector<at::Tensor>> tensors = CheckedOutputs(result);
      if (!tensors.ok()) return tensors.status();
      for (at::Tensor& t : *tensors) t = t.to(at::kCPU).contiguous();
      return CopyOut(*tensors, part_rows);
    } catch (const c10::OutOfMemoryError& e) {
#if FAIRSERVE_WITH_CUDA
      // Cached blocks go back to the driver so the next batch (another
      // tenant's, likely smaller) finds room; the server serves on.
      if (placement_.cuda()) cuda::ReleaseCached();
#endif
      return absl::ResourceExhaustedError(
          absl::StrCat("model '", config_.name, "' ran out of memory for this batch: ",
                       FirstLine(e.what())));
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError(
          absl::StrCat("model '", config_.name, "' ran out of host memory"));
    } catch (const torch::jit::JITException& e) {
      // An exception the model's own code raised for these inputs; the useful
      // part is the last line ("builtins.ValueError: ...").
      return absl::InvalidArgumentError(
          absl::StrCat("model '", config_.name, "' rejected the input: ", LastLine(e.what())));
    } catch (const c10::Error& e) {
      return RunError(e.what_without_backtrace(), absl::StatusCode::kInvalidArgument);
    } catch (const std::exception& e) {
      return RunError(e.what(), absl::StatusCode::kInternal);
    }
  }

  // Measures what the model holds on its GPU (see Load) and records it as
  // its charge. The caller holds no other load on this device.
  void MeasureCudaCharge(uint64_t loaded_bytes) {
#if FAIRSERVE_WITH_CUDA
    const int device = placement_.cuda_index;
    cuda::ResetPeak(device);
    const uint64_t base = cuda::MemoryOf(device).allocated;
    Warmup();
    const uint64_t peak = cuda::MemoryOf(device).peak_allocated;
    activation_bytes_ = peak > base ? peak - base : 0;
    memory_bytes_ = loaded_bytes + activation_bytes_;
    if (memory_bytes_ < parameter_bytes_) {
      // Another model's batch freed memory between the readings: never
      // charge less than the weights themselves.
      spdlog::warn("model '{}': measured {} on {}, under its {} of parameters; charging the "
                   "parameters", config_.name, FormatBytes(memory_bytes_), config_.device,
                   FormatBytes(parameter_bytes_));
      memory_bytes_ = parameter_bytes_;
    }
#else
    (void)loaded_bytes;
#endif
  }

  uint64_t memory_bytes() const override { return memory_bytes_; }
  uint64_t parameter_bytes() const override { return parameter_bytes_; }
  uint64_t activation_bytes() const override { return activation_bytes_; }

  // TorchScript profiles a graph's first run and optimizes it on the next:
  // run both here, on the loading thread (background priority), with zeros,
  // so no worker pays for it in the middle of other tenants' batches. On the
  // CPU a batch of 1 does; on a GPU it is the model's max batch, so the
  // peak measured around it includes the largest activations a batch can
  // need. A model that rejects zeros is simply not warmed up.
  void Warmup() {
    std::vector<std::string> storage;
    std::vector<BatchInput> inputs;
    storage.reserve(config_.inputs.size());
    for (const TensorSpec& spec : config_.inputs) {
      if (ElementSize(spec.dtype) == 0) return;
      std::vector<int64_t> shape = spec.shape;
      for (int64_t& d : shape) d = d < 0 ? 1 : d;
      if (placement_.cuda() && config_.batched() && !shape.empty()) {
        shape[0] = config_.max_batch_size;
      }
      int64_t count = 0;
      if (!ElementCount(shape, &count) || count > (int64_t{1} << 24)) return;
      storage.emplace_back(static_cast<size_t>(count) * ElementSize(spec.dtype), '\0');
      inputs.push_back(BatchInput{spec.dtype, shape, {storage.back()}});
    }
    for (int run = 0; run < 2; ++run) {
      absl::StatusOr<std::vector<SplitOutput>> out = RunSplit(inputs, {}, nullptr);
      if (!out.ok()) {
        spdlog::debug("model '{}': no warm-up ({})", config_.name,
                      std::string(out.status().message()));
        return;
      }
    }
  }

 private:
  // libtorch reports a failed CPU allocation as a plain c10::Error, which
  // the TorchScript interpreter may wrap again: recognise it by its text.
  absl::Status RunError(const char* what, absl::StatusCode otherwise) const {
    std::string text(what);
    for (const char* oom : {"can't allocate memory", "not enough memory"}) {
      size_t at = text.find(oom);
      if (at == std::string::npos) continue;
      size_t begin = text.rfind('\n', at);
      begin = begin == std::string::npos ? 0 : begin + 1;
      return absl::ResourceExhaustedError(
          absl::StrCat("model '", config_.name, "' ran out of memory for this batch: ",
                       FirstLine(text.c_str() + begin)));
    }
    return absl::Status(otherwise,
                        absl::StrCat("model '", config_.name, "' failed: ", FirstLine(what)));
  }

  static std::string FirstLine(const char* what) {
    std::string s(what);
    size_t nl = s.find('\n');
    return nl == std::string::npos ? s : s.substr(0, nl);
  }

  static std::string LastLine(const char* what) {
    std::string s(what);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    size_t nl = s.rfind('\n');
    return nl == std::string::npos ? s : s.substr(nl + 1);
  }

  at::Tensor MakeInput(const BatchInput& in, size_t i) {
    at::Tensor t = torch::empty(in.shape, torch::TensorOptions().dtype(in_types_[i]));
    char* dst = static_cast<char*>(t.data_ptr());
    for (absl::string_view part : in.parts) {
      std::memcpy(dst, part.data(), part.size());
      dst += part.size();
    }
    return t;
  }

  // The model's outputs, checked against the config (count and types).
  absl::StatusOr<std::vector<at::Tensor>> CheckedOutputs(const c10::IValue& result) {
    std::vector<at::Tensor> tensors;
    if (result.isTensor()) {
      tensors.push_back(result.toTensor());
    } else if (result.isTuple()) {
      for (const auto& v : result.toTupleRef().elements()) {
        if (!v.isTensor()) return BadOutput("a tuple element that is not a tensor");
        tensors.push_back(v.toTensor());
      }
    } else if (result.isTensorList()) {
      for (const at::Tensor& t : result.toTensorVector()) tensors.push_back(t);
    } else if (result.isGenericDict()) {
      auto dict = result.toGenericDict();
      for (const TensorSpec& spec : config_.outputs) {
        auto it = dict.find(spec.name);
        if (it == dict.end() || !it->value().isTensor()) {
          return BadOutput(absl::StrCat("a dict without tensor '", spec.name, "'"));
        }
        tensors.push_back(it->value().toTensor());
      }
    } else {
      return BadOutput(absl::StrCat("a value of type ", result.tagKind()));
    }
    if (tensors.size() != config_.outputs.size()) {
      return BadOutput(absl::StrCat(tensors.size(), " tensors where the config declares ",
                                    config_.outputs.size()));
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].scalar_type() != out_types_[i]) {
        return BadOutput(absl::StrCat("output '", config_.outputs[i].name, "' of type ",
                                      c10::toString(tensors[i].scalar_type()),
                                      " where the config declares ",
                                      DataTypeName(config_.outputs[i].dtype)));
      }
    }
    return tensors;
  }

  // Host tensors (contiguous, on the CPU) copied out to owned outputs,
  // each request's rows straight to its own part (RunSplit).
  std::vector<SplitOutput> CopyOut(const std::vector<at::Tensor>& host,
                                   const std::vector<int64_t>& part_rows) const {
    std::vector<SplitOutput> out(host.size());
    for (size_t i = 0; i < host.size(); ++i) {
      out[i].dtype = config_.outputs[i].dtype;
      out[i].shape.assign(host[i].sizes().begin(), host[i].sizes().end());
      absl::string_view bytes(static_cast<const char*>(host[i].data_ptr()), host[i].nbytes());
      if (part_rows.empty()) {
        out[i].parts.emplace_back(bytes);
      } else {
        out[i].parts.reserve(part_rows.size());
        SplitRows(out[i].shape, bytes, part_rows, &out[i].parts);
      }
    }
    return out;
  }

  // One batch on this model's GPU, on the calling worker's own stream:
  // inputs through pinned staging buffers, the forward pass between two
  // timing events, outputs back through pinned buffers, then a wait on this
  // stream only. The events' interval is the batch's compute time.
  absl::StatusOr<std::vector<SplitOutput>> RunOnCuda(const std::vector<BatchInput>& inputs,
                                                     const std::vector<int64_t>& part_rows,
                                                     RunTiming* timing) {
#if FAIRSERVE_WITH_CUDA
    cuda::Batch batch(placement_.cuda_index);
    std::vector<c10::IValue> args;
    args.reserve(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      args.emplace_back(batch.Upload(inputs[i].parts, inputs[i].shape, in_types_[i]));
    }
    batch.StartTiming();
    c10::IValue result = module_.forward(std::move(args));
    batch.StopTiming();
    absl::StatusOr<std::vector<at::Tensor>> tensors = CheckedOutputs(result);
    if (!tensors.ok()) {
      batch.Finish();
      return tensors.status();
    }
    for (at::Tensor& t : *tensors) t = batch.Download(t);
    double seconds = batch.Finish();
    if (timing != nullptr) timing->device_seconds = seconds;
    return CopyOut(*tensors, part_rows);
#else
    (void)inputs;
    (void)part_rows;
    (void)timing;
    return absl::FailedPreconditionError(NoCudaReason());
#endif
  }

  absl::Status BadOutput(const std::string& what) {
    return absl::InternalError(
        absl::StrCat("model '", config_.name, "' returned ", what,
                     "; fix the model or its config.yaml outputs"));
  }

  const ModelConfig config_;
  torch::jit::Module module_;
  const std::vector<at::ScalarType> in_types_;
  const std::vector<at::ScalarType> out_types_;
  const Placement placement_;
  uint64_t parameter_bytes_ = 0;
  uint64_t activation_bytes_ = 0;
  uint64_t memory_bytes_ = 0;
};

class TorchModelLoader final : public ModelLoader {
 public:
  absl::StatusOr<std::unique_ptr<Executor>> Load(const ModelConfig& config,
                                                 const std::string& model_file) override {
    std::vector<at::ScalarType> in, out;
    for (const TensorSpec& s : config.inputs) {
      auto t = ToTorch(s.dtype);
      if (!t.ok()) return Annotate(config, s, t.status());
      in.push_back(*t);
    }
    for (const TensorSpec& s : config.outputs) {
      auto t = ToTorch(s.dtype);
      if (!t.ok()) return Annotate(config, s, t.status());
      out.push_back(*t);
    }
    absl::StatusOr<Placement> placement = ParseDevice(config.device);
    if (!placement.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("model '", config.name, "': ", placement.status().message()));
    }
    try {
      // On a GPU the charge is measured, not computed: the caching
      // allocator's bytes after the load minus before it (weights, buffers
      // and whatever the load left allocated), plus the peak above that
      // during a warm-up at the max batch (activations). Loads run one at a
      // time on the cache's loader thread; batches of other models running
      // meanwhile can only raise the peak, so the charge errs high.
#if FAIRSERVE_WITH_CUDA
      uint64_t before = 0;
      if (placement->cuda()) before = cuda::MemoryOf(placement->cuda_index).allocated;
#endif
      torch::jit::Module module = torch::jit::load(model_file, placement->device);
      module.eval();
      uint64_t loaded = 0;
#if FAIRSERVE_WITH_CUDA
      if (placement->cuda()) {
        cuda::SyncCurrentStream(placement->cuda_index);
        uint64_t after = cuda::MemoryOf(placement->cuda_index).allocated;
        loaded = after > before ? after - before : 0;
      }
#endif
      auto executor = std::make_unique<TorchExecutor>(config, std::move(module), std::move(in),
                                                      std::move(out), *placement);
      if (placement->cuda()) {
        executor->MeasureCudaCharge(loaded);
      } else {
        executor->Warmup();
      }
      return std::unique_ptr<Executor>(std::move(executor));
    } catch (const c10::Error& e) {
      std::string what = e.what_without_backtrace();
      return absl::FailedPreconditionError(absl::StrCat(
          model_file, ": not a loadable TorchScript file: ", what.substr(0, what.find('\n'))));
    } catch (const std::exception& e) {
      return absl::FailedPreconditionError(
          absl::StrCat(model_file, ": cannot load: ", e.what()));
    }
  }

 private:
  static absl::Status Annotate(const ModelConfig& config, const TensorSpec& spec,
                               const absl::Status& s) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", config.name, "' tensor '", spec.name, "': ", s.message()));
  }
};

}  // namespace

void ConfigureTorchRuntime(const TorchRuntimeOptions& options) {
  static std::once_flag once;
  std::call_once(once, [&] {
    int n = std::max(1, options.intra_op_threads);
    at::set_num_threads(n);
    try {
      at::set_num_interop_threads(1);
    } catch (const c10::Error&) {
      // Already started; harmless.
    }
    // OpenBLAS starts its own pool sized to every core; with several workers
    // that oversubscribes the CPU. Pin it to our intra-op count if present.
    using SetThreads = void (*)(int);
    if (auto fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
      fn(n);
    }
    spdlog::info("libtorch {}: {} intra-op thread(s) per worker", TORCH_VERSION, n);
  });
}

void PrepareTorchWorkerThread() { at::init_num_threads(); }

bool BuiltWithCuda() {
#if FAIRSERVE_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int CudaDeviceCount() {
#if FAIRSERVE_WITH_CUDA
  static const int count = [] {
    try {
      return cuda::DeviceCount();
    } catch (const c10::Error& e) {
      spdlog::warn("CUDA: no devices ({})", e.what_without_backtrace());
      return 0;
    }
  }();
  return count;
#else
  return 0;
#endif
}

absl::Status CheckDevice(const std::string& device) {
  absl::StatusOr<Placement> p = ParseDevice(device);
  return p.ok() ? absl::OkStatus() : p.status();
}

absl::Status PrepareDevices(const std::vector<DeviceConfig>& devices) {
  for (const DeviceConfig& d : devices) {
    absl::StatusOr<Placement> p = ParseDevice(d.name);
    if (!p.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          p.status().message(), "; remove it from devices or run where it exists"));
    }
#if FAIRSERVE_WITH_CUDA
    if (p->cuda()) {
      cuda::Memory m = cuda::MemoryOf(p->cuda_index);
      if (d.memory_budget > 0 && m.total > 0) {
        // The allocator refuses to grow past the budget: one process
        // cannot take the card, and a batch over it fails alone with an
        // out-of-memory (RESOURCE_EXHAUSTED).
        double fraction = std::min(1.0, static_cast<double>(d.memory_budget) / m.total);
        cuda::SetMemoryFraction(p->cuda_index, fraction);
        spdlog::info("{}: {} of {} for this process ({:.1f}%)", d.name,
                     FormatBytes(d.memory_budget), FormatBytes(m.total), fraction * 100);
      } else {
        spdlog::info("{}: {} total, no budget set (devices[].memory_budget)", d.name,
                     FormatBytes(m.total));
      }
    }
#endif
  }
  return absl::OkStatus();
}

absl::StatusOr<DeviceMemoryStats> DeviceMemory(const std::string& device) {
  absl::StatusOr<Placement> p = ParseDevice(device);
  if (!p.ok()) return p.status();
  if (!p->cuda()) return absl::NotFoundError("the cpu device has no allocator statistics");
#if FAIRSERVE_WITH_CUDA
  cuda::Memory m = cuda::MemoryOf(p->cuda_index);
  return DeviceMemoryStats{m.allocated, m.reserved, m.total};
#else
  return absl::FailedPreconditionError(NoCudaReason());
#endif
}

std::unique_ptr<ModelLoader> MakeTorchModelLoader() {
  return std::make_unique<TorchModelLoader>();
}

}  // namespace fairserve
