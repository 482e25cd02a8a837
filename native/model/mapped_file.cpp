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

MappedFile::~MappedFile() {
  if (data_) munmap(const_cast<uint8_t*>(data_), size_t(size_));
}

}  // namespace chai
