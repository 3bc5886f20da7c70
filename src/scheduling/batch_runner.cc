#include "fairserve/scheduling/batch_runner.h"

#include <chrono>

#include "absl/strings/str_cat.h"

namespace fairserve {
namespace {

double Seconds(Clock::Duration d) { return std::chrono::duration<double>(d).count(); }

// Checks what the model returned against its config for a run of `samples`
// split into `parts` requests.
absl::Status CheckOutputs(const ModelConfig& config, const std::vector<SplitOutput>& outputs,
                          int64_t samples, size_t parts) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const TensorSpec& spec = config.outputs[i];
    const SplitOutput& t = outputs[i];
    bool ok = t.shape.size() == spec.shape.size();
    for (size_t d = 0; ok && d < spec.shape.size(); ++d) {
      if (d == 0 && config.batched()) {
        ok = t.shape[0] == samples;
      } else {
        ok = spec.shape[d] == -1 || spec.shape[d] == t.shape[d];
      }
    }
    if (!ok) {
      return absl::InternalError(absl::StrCat(
          "model '", config.name, "' returned output '", spec.name, "' with shape ",
          ShapeString(t.shape), " for ", samples, " sample(s); its config declares ",
          ShapeString(spec.shape)));
    }
    if (t.parts.size() != parts) {
      return absl::InternalError(absl::StrCat(
          "model '", config.name, "' returned output '", spec.name, "' with shape ",
          ShapeString(t.shape), " not split into the batch's ", parts,
          " request(s) (", t.parts.size(), " part(s)): its bytes are not whole rows of that "
          "shape, or its executor did not split it"));
    }
  }
  return absl::OkStatus();
}

// What a result weighs on the wire: its tensor bytes plus an allowance for
// names, shapes and framing per output.
uint64_t ResponseBytes(const InferenceResult& result) {
  constexpr uint64_t kPerOutput = 1024;
  uint64_t bytes = 0;
  for (const Tensor& t : result.outputs) bytes += t.bytes.size() + kPerOutput;
  return bytes;
}

using Replies = std::vector<BatchRunner::Reply>;

// Records `request`'s share in `record` and queues its answer in `replies`.
void Complete(InferenceRequest& request, absl::StatusOr<InferenceResult> result,
              BatchRecord* record, Replies* replies, double compute_seconds, Clock::TimePoint now) {
  BatchItem item;
  item.tenant_id = request.tenant_id;
  item.samples = request.batch_size;
  item.compute_seconds = compute_seconds;
  item.queue_time = now - request.arrival;
  item.code = result.ok() ? absl::StatusCode::kOk : result.status().code();
  record->items.push_back(std::move(item));
  replies->push_back({std::move(request.on_done), std::move(result)});
}

}  // namespace

absl::Status BatchRunner::RunOnce(std::vector<std::unique_ptr<InferenceRequest>>& batch,
                                  BatchRecord* record, Replies* replies) {
  const InferenceRequest& first = *batch.front();
  const ModelConfig& config = first.servable->config;
  int64_t total = 0;
  for (const auto& r : batch) total += r->batch_size;

  std::vector<BatchInput> inputs(first.inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    inputs[i].dtype = first.inputs[i].dtype;
    inputs[i].shape = first.inputs[i].shape;
    if (config.batched()) inputs[i].shape[0] = total;
    inputs[i].parts.reserve(batch.size());
    for (const auto& r : batch) inputs[i].parts.push_back(r->inputs[i].bytes);
  }

  // Each output comes back split into the requests' rows (a shared batch),
  // or whole (a lone request).
  std::vector<int64_t> part_rows;
  if (batch.size() > 1) {
    part_rows.reserve(batch.size());
    for (const auto& r : batch) part_rows.push_back(r->batch_size);
  }

  // The time billed: the device's own clock where it has one (CUDA events
  // around the forward pass), else the steady clock around the run.
  RunTiming timing;
  Clock::TimePoint start = clock_.Now();
  absl::StatusOr<std::vector<SplitOutput>> outputs =
      first.servable->executor->RunSplit(inputs, part_rows, &timing);
  Clock::TimePoint end = clock_.Now();
  double seconds = timing.device_seconds >= 0 ? timing.device_seconds : Seconds(end - start);
  record->device_seconds += seconds;
  if (outputs.ok()) {
    absl::Status check = CheckOutputs(config, *outputs, total, batch.size());
    if (!check.ok()) outputs = check;
  }
  if (!outputs.ok()) {
    // A lone request pays for its own failed run; a failed shared batch is
    // retried request by request and its time is not billed to anyone.
    if (batch.size() == 1) {
      record->compute_seconds += seconds;
      record->samples += total;
      Complete(*batch.front(), outputs.status(), record, replies, seconds, start);
      batch.clear();
    }
    return outputs.status();
  }
  record->compute_seconds += seconds;
  record->samples += total;

  // Each request takes its part of every output, and its share of the time
  // by samples. The last request takes the remainder so the shares add up
  // exactly.
  double charged = 0;
  for (size_t k = 0; k < batch.size(); ++k) {
    InferenceRequest& r = *batch[k];
    InferenceResult result;
    result.batch_samples = total;
    result.queue_time = start - r.arrival;
    result.compute_seconds = (k + 1 == batch.size())
                                 ? seconds - charged
                                 : seconds * static_cast<double>(r.batch_size) / total;
    charged += result.compute_seconds;
    for (int idx : r.output_indexes) {
      SplitOutput& out = (*outputs)[idx];
      Tensor part{out.dtype, out.shape, std::move(out.parts[k])};
      if (config.batched()) part.shape[0] = r.batch_size;
      result.outputs.push_back(std::move(part));
      result.output_names.push_back(config.outputs[idx].name);
    }
    double share = result.compute_seconds;
    if (uint64_t bytes = ResponseBytes(result);
        r.max_response_bytes > 0 && bytes > r.max_response_bytes) {
      // The client could not receive it: an error, and not billed.
      Complete(r,
               absl::ResourceExhaustedError(absl::StrCat(
                   "the response would be about ", bytes, " bytes, over the server's message "
                   "limit of ", r.max_response_bytes, " (server.max_message_bytes); send "
                   "fewer samples per request or ask for fewer outputs")),
               record, replies, 0, start);
      record->compute_seconds -= share;
      continue;
    }
    Complete(r, std::move(result), record, replies, share, start);
  }
  batch.clear();
  return absl::OkStatus();
}

BatchRecord BatchRunner::Run(std::vector<std::unique_ptr<InferenceRequest>> batch,
                             const std::function<void(const BatchRecord&)>& settle) {
  BatchRecord record;
  if (!batch.empty()) {
    record.model_name = batch.front()->servable->config.name;
    record.model_version = batch.front()->servable->version;
  }
  Clock::TimePoint now = clock_.Now();
  Replies replies;
  replies.reserve(batch.size());
  std::vector<std::unique_ptr<InferenceRequest>> live;
  live.reserve(batch.size());
  for (auto& r : batch) {
    // The deadline first: a client whose deadline passed is also cancelled
    // by gRPC, and DEADLINE_EXCEEDED is the more precise answer.
    if (now >= r->deadline) {
      Complete(*r,
               absl::DeadlineExceededError(
                   "the request's deadline passed while it was queued; it was not run"),
               &record, &replies, 0, now);
    } else if (r->Cancelled()) {
      Complete(*r, absl::CancelledError("the client cancelled the request"), &record, &replies, 0,
               now);
    } else {
      live.push_back(std::move(r));
    }
  }
  if (!live.empty()) {
    absl::Status status = RunOnce(live, &record, &replies);
    if (!status.ok() && !live.empty()) {
      for (auto& r : live) {
        std::vector<std::unique_ptr<InferenceRequest>> single;
        single.push_back(std::move(r));
        RunOnce(single, &record, &replies).IgnoreError();
      }
    }
  }
  for (BatchObserver* o : observers_) o->OnBatch(record);
  if (settle) settle(record);
  if (gate_ == nullptr || replies.empty()) {
    for (Reply& r : replies) r.done(std::move(r.result));
    return record;
  }
  // std::function copies: the move-only answers travel by pointer.
  auto held = std::make_shared<Replies>(std::move(replies));
  gate_->AfterRecorded([held] {
    for (Reply& r : *held) r.done(std::move(r.result));
  });
  return record;
}

}  // namespace fairserve
