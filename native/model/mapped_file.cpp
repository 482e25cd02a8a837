#include "mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace chai {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(ErrorCode::InvalidArgument, "cannot open model file '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorCode::InvalidArgument, "model path '" + path + "' is not a regular file");
  }
  file->size_ = uint64_t(st.st_size);
  if (file->size_ == 0) {
    ::close(fd);
    return file;
  }
  void* map = mmap(nullptr, size_t(file->size_), PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping keeps the file open
  if (map == MAP_FAILED) fail(ErrorCode::InvalidArgument, "cannot map '" + path + "': " + std::strerror(errno));
  file->data_ = static_cast<const uint8_t*>(map);
  return file;
}

uint64_t MappedFile::release(const void* p, uint64_t bytes) const {
  const auto* begin = static_cast<const uint8_t*>(p);
  if (!data_ || begin < data_ || bytes > size_ || begin - data_ > int64_t(size_ - bytes)) return 0;
  const auto page = uint64_t(sysconf(_SC_PAGESIZE));
  const uint64_t first = (uint64_t(begin - data_) + page - 1) / page * page;  // the mapping starts on a page
  const uint64_t last = uint64_t(begin - data_ + int64_t(bytes)) / page * page;
  if (last <= first) return 0;
  // A private, read-only file mapping never holds changes of ours: dropping its pages loses nothing.
  if (madvise(const_cast<uint8_t*>(data_) + first, size_t(last - first), MADV_DONTNEED) != 0) return 0;
  return last - first;
}

MappedFile::~MappedFile() {
  if (data_) munmap(const_cast<uint8_t*>(data_), size_t(size_));
}

}  // namespace chai
