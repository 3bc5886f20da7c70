#ifndef FAIRSERVE_MODELS_TENSOR_H_
#define FAIRSERVE_MODELS_TENSOR_H_

// Framework-neutral tensors: what crosses from the front end through the
// scheduler to an executor. Only the executor turns them into torch tensors.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "fairserve/models/data_type.h"

namespace fairserve {

// Row-major, little-endian, unpadded element bytes that someone else owns
// (the gRPC request message, or a request's decode buffer). Valid for the
// lifetime of the request it belongs to.
struct TensorView {
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> shape;
  absl::string_view bytes;
};

// An owned tensor (executor outputs).
struct Tensor {
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> shape;
  std::string bytes;
};

// One model input for a batch: the requests' parts, to be joined along the
// first (batch) dimension. `shape` is the joined shape.
struct BatchInput {
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> shape;
  std::vector<absl::string_view> parts;
};

// One model output of a batch, split along the first (batch) dimension
// into the rows of each request: parts[k] holds the rows of the batch's
// k-th request (the k-th part of each BatchInput). `shape` is the whole
// output's shape.
struct SplitOutput {
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> shape;
  std::vector<std::string> parts;
};

// Copies an output of `shape` (row-major, `bytes` long) into parts of
// part_rows[k] rows each, appended to *parts. False, appending nothing,
// when the output's first dimension is not the sum of part_rows or its
// bytes are not a whole number of rows.
bool SplitRows(const std::vector<int64_t>& shape, absl::string_view bytes,
               const std::vector<int64_t>& part_rows, std::vector<std::string>* parts);

// Product of dims; false on a negative dim or int64 overflow.
bool ElementCount(const std::vector<int64_t>& shape, int64_t* count);

std::string ShapeString(const std::vector<int64_t>& shape);

}  // namespace fairserve

#endif  // FAIRSERVE_MODELS_TENSOR_H_
