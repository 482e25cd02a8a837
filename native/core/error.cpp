#include "error.h"

namespace chai {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return "E_INVALID_ARGUMENT";
    case ErrorCode::ModelFormat: return "E_MODEL_FORMAT";
    case ErrorCode::PlanMismatch: return "E_PLAN_MISMATCH";
    case ErrorCode::ContextOverflow: return "E_CONTEXT_OVERFLOW";
    case ErrorCode::DeviceUnavailable: return "E_DEVICE_UNAVAILABLE";
    case ErrorCode::DeviceOom: return "E_DEVICE_OOM";
    case ErrorCode::Cuda: return "E_CUDA";
    case ErrorCode::Unsupported: return "E_UNSUPPORTED";
    case ErrorCode::SessionBusy: return "E_SESSION_BUSY";
    case ErrorCode::NonFinite: return "E_NON_FINITE";
    case ErrorCode::Internal: return "E_INTERNAL";
  }
  return "E_INTERNAL";
}

}  // namespace chai
