// Typed errors shared by every layer. Native code reports failures by throwing chai::Error;
// the addon turns it into a JS error whose `code` is the stable string from error_code_name().
#pragma once
#include <stdexcept>
#include <string>

namespace chai {

enum class ErrorCode {
  InvalidArgument,   // a caller passed something malformed: shapes, dtypes, options
  ModelFormat,       // a model file is corrupt, truncated or of an unsupported kind
  PlanMismatch,      // a cluster plan does not fit the model it is used with
  ContextOverflow,   // a sequence would exceed the session's maxTokens
  DeviceUnavailable, // the requested device does not exist or cannot be used
  DeviceOom,         // device (or host pool) memory ran out
  Cuda,              // a CUDA runtime call failed
  Unsupported,       // valid input that this build or backend cannot run
  SessionBusy,       // a session was used while a generation on it is still open
  NonFinite,         // the model computed NaN or infinite values (corrupt weights)
  Internal,          // a bug: an invariant of ours did not hold
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] inline void fail(ErrorCode code, const std::string& message) { throw Error(code, message); }

}  // namespace chai

// Throws chai::Error(code, message) unless condition holds. A macro so that the message (often
// built from numbers and shapes) is only put together when the check fails: checks run on every op.
#define CHAI_REQUIRE(condition, code, message) \
  do {                                          \
    if (!(condition)) ::chai::fail(code, message); \
  } while (0)
