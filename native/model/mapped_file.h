// A read-only memory mapping of a whole file: model weights are used in place, never copied.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace chai {

class MappedFile {
 public:
  // Throws Error(InvalidArgument) when the file cannot be opened, is not a regular file or cannot
  // be mapped; an empty file maps to data() == nullptr, size() == 0.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops this process's pages of [p, p + bytes) (the whole pages inside it, if it lies in this
  // mapping): a hint for data nothing will read again, such as weights the CPU backend packed. A
  // later read still sees the file's bytes (read back from the page cache or the disk). Returns the
  // bytes dropped.
  uint64_t release(const void* p, uint64_t bytes) const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace chai
