#include "fairserve/models/data_type.h"

namespace fairserve {
namespace {

struct TypeInfo {
  DataType type;
  absl::string_view name;
  size_t size;
};

constexpr TypeInfo kTypes[] = {
    {DataType::kBool, "BOOL", 1},     {DataType::kUint8, "UINT8", 1},
    {DataType::kUint16, "UINT16", 2}, {DataType::kUint32, "UINT32", 4},
    {DataType::kUint64, "UINT64", 8}, {DataType::kInt8, "INT8", 1},
    {DataType::kInt16, "INT16", 2},   {DataType::kInt32, "INT32", 4},
    {DataType::kInt64, "INT64", 8},   {DataType::kFp16, "FP16", 2},
    {DataType::kBf16, "BF16", 2},     {DataType::kFp32, "FP32", 4},
    {DataType::kFp64, "FP64", 8},     {DataType::kBytes, "BYTES", 0},
};

}  // namespace

DataType ParseDataType(absl::string_view name) {
  for (const TypeInfo& t : kTypes) {
    if (t.name == name) return t.type;
  }
  return DataType::kInvalid;
}

absl::string_view DataTypeName(DataType type) {
  for (const TypeInfo& t : kTypes) {
    if (t.type == type) return t.name;
  }
  return "INVALID";
}

size_t ElementSize(DataType type) {
  for (const TypeInfo& t : kTypes) {
    if (t.type == type) return t.size;
  }
  return 0;
}

}  // namespace fairserve
