#ifndef FAIRSERVE_COMMON_STATUS_MACROS_H_
#define FAIRSERVE_COMMON_STATUS_MACROS_H_

// Small stand-ins for the status macros that Abseil 20220623 does not ship.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FS_CONCAT_INNER_(a, b) a##b
#define FS_CONCAT_(a, b) FS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                    \
  do {                                           \
    ::absl::Status fs_status_ = (expr);          \
    if (!fs_status_.ok()) return fs_status_;     \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, MakeX());` assigns the value of an absl::StatusOr
// or returns its error from the enclosing function.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(FS_CONCAT_(fs_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

#endif  // FAIRSERVE_COMMON_STATUS_MACROS_H_
