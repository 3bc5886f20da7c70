#ifndef FAIRSERVE_MODELS_DATA_TYPE_H_
#define FAIRSERVE_MODELS_DATA_TYPE_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace fairserve {

// Tensor element types of the Open Inference Protocol.
enum class DataType : uint8_t {
  kInvalid = 0,
  kBool, kUint8, kUint16, kUint32, kUint64,
  kInt8, kInt16, kInt32, kInt64,
  kFp16, kBf16, kFp32, kFp64,
  kBytes,
};

// "FP32" -> kFp32; kInvalid for anything else (names are case-sensitive, as on the wire).
DataType ParseDataType(absl::string_view name);
// kFp32 -> "FP32".
absl::string_view DataTypeName(DataType type);
// Bytes per element; 0 for kBytes (variable length) and kInvalid.
size_t ElementSize(DataType type);

}  // namespace fairserve

#endif  // FAIRSERVE_MODELS_DATA_TYPE_H_
