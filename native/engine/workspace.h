// Scratch buffers of forward passes, kept between calls so that a decode step allocates nothing
// (on a GPU each allocation and free would also synchronise the device). Each slot grows to the
// largest size asked of it. One forward pass at a time may use a workspace: hold lock().
#pragma once
#include <memory>
#include <mutex>
#include <vector>

#include "core/backend.h"

namespace chai {

class Workspace {
 public:
  explicit Workspace(Backend& backend) : backend_(backend) {}

  std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(mutex_); }

  // A buffer of at least `bytes` for `slot`; earlier contents are not kept when it grows.
  void* get(size_t slot, size_t bytes) {
    if (slots_.size() <= slot) slots_.resize(slot + 1);
    auto& buffer = slots_[slot];
    if (!buffer || buffer->bytes() < bytes) {
      buffer.reset();  // free first: the old and new buffer need not coexist
      buffer = std::make_unique<DeviceBuffer>(backend_, bytes);
    }
    return buffer->get();
  }

 private:
  Backend& backend_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<DeviceBuffer>> slots_;
};

}  // namespace chai
