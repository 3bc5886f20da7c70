// The only translation unit that includes torch headers (compile time on two
// cores matters): everything else sees fairserve::Executor.

#include <dlfcn.h>
#include <torch/script.h>
#include <ATen/Parallel.h>
#include <torch/csrc/jit/runtime/jit_exception.h>
#include <torch/version.h>

#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "fairserve/models/executor.h"
#include "spdlog/spdlog.h"

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

class TorchExecutor final : public Executor {
 public:
  TorchExecutor(ModelConfig config, torch::jit::Module module, std::vector<at::ScalarType> in,
                std::vector<at::ScalarType> out)
      : config_(std::move(config)), module_(std::move(module)), in_types_(std::move(in)),
        out_types_(std::move(out)) {
    for (const auto& p : module_.parameters(/*recurse=*/true)) memory_bytes_ += p.nbytes();
    for (const auto& b : module_.buffers(/*recurse=*/true)) memory_bytes_ += b.nbytes();
  }

  absl::StatusOr<std::vector<Tensor>> Run(const std::vector<BatchInput>& inputs) override {
    if (inputs.size() != config_.inputs.size()) {
      return absl::InternalError(absl::StrCat("model '", config_.name, "' takes ",
                                              config_.inputs.size(), " inputs, got ",
                                              inputs.size()));
    }
    try {
      c10::InferenceMode guard;
      std::vector<c10::IValue> args;
      args.reserve(inputs.size());
      for (size_t i = 0; i < inputs.size(); ++i) args.emplace_back(MakeInput(inputs[i], i));
      c10::IValue result = module_.forward(std::move(args));
      return CollectOutputs(result);
    } catch (const c10::OutOfMemoryError& e) {
      return absl::ResourceExhaustedError(
          absl::StrCat("model '", config_.name, "' ran out of memory: ", FirstLine(e.what())));
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

  uint64_t memory_bytes() const override { return memory_bytes_; }

  // TorchScript profiles a graph's first run and optimizes it on the next:
  // run both here, on the loading thread (background priority), with zeros
  // of batch 1, so no worker pays for it in the middle of other tenants'
  // batches. A model that rejects zeros is simply not warmed up.
  void Warmup() {
    std::vector<std::string> storage;
    std::vector<BatchInput> inputs;
    storage.reserve(config_.inputs.size());
    for (const TensorSpec& spec : config_.inputs) {
      if (ElementSize(spec.dtype) == 0) return;
      std::vector<int64_t> shape = spec.shape;
      for (int64_t& d : shape) d = d < 0 ? 1 : d;
      int64_t count = 0;
      if (!ElementCount(shape, &count) || count > (int64_t{1} << 24)) return;
      storage.emplace_back(static_cast<size_t>(count) * ElementSize(spec.dtype), '\0');
      inputs.push_back(BatchInput{spec.dtype, shape, {storage.back()}});
    }
    for (int run = 0; run < 2; ++run) {
      absl::StatusOr<std::vector<Tensor>> out = Run(inputs);
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

  absl::StatusOr<std::vector<Tensor>> CollectOutputs(const c10::IValue& result) {
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
    std::vector<Tensor> out(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      at::Tensor t = tensors[i];
      if (t.scalar_type() != out_types_[i]) {
        return BadOutput(absl::StrCat("output '", config_.outputs[i].name, "' of type ",
                                      c10::toString(t.scalar_type()), " where the config declares ",
                                      DataTypeName(config_.outputs[i].dtype)));
      }
      t = t.to(at::kCPU).contiguous();
      out[i].dtype = config_.outputs[i].dtype;
      out[i].shape.assign(t.sizes().begin(), t.sizes().end());
      out[i].bytes.assign(static_cast<const char*>(t.data_ptr()), t.nbytes());
    }
    return out;
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
    try {
      torch::jit::Module module = torch::jit::load(model_file, torch::kCPU);
      module.eval();
      auto executor = std::make_unique<TorchExecutor>(config, std::move(module), std::move(in),
                                                      std::move(out));
      executor->Warmup();
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

std::unique_ptr<ModelLoader> MakeTorchModelLoader() {
  return std::make_unique<TorchModelLoader>();
}

}  // namespace fairserve
