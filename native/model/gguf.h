// GGUF (versions 2 and 3) reader. The file is memory-mapped; the header is parsed with every
// length, count, type and offset checked against the file size before use, so a corrupt or
// truncated file is an E_MODEL_FORMAT error naming the problem, never an out-of-bounds read.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "mapped_file.h"

namespace chai {

// One metadata value. Arrays hold scalars or strings (GGUF allows nested arrays; we reject them).
struct GgufValue {
  enum class Kind { UInt, Int, Float, Bool, String, Array } kind = Kind::UInt;
  uint32_t gguf_type = 0;        // the type code in the file (for arrays: of the elements)
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  std::vector<GgufValue> items;  // Kind::Array

  bool is_integer() const { return kind == Kind::UInt || kind == Kind::Int; }
  int64_t as_int() const { return kind == Kind::Int ? i : int64_t(u); }
  double as_float() const { return kind == Kind::Float ? f : kind == Kind::Int ? double(i) : double(u); }
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the contiguous (row) length
  uint32_t ggml_type = 0;
  DType dtype = DType::F32;
  uint64_t offset = 0;        // from the start of the data section
  uint64_t bytes = 0;
  const void* data = nullptr;

  int64_t cols() const { return dims[0]; }
  int64_t rows() const;       // product of dims[1..]
};

class GgufFile {
 public:
  // Throws Error(ModelFormat) on any malformed content, Error(InvalidArgument) if unreadable.
  static std::shared_ptr<GgufFile> open(const std::string& path);
  // A model description built by another reader (safetensors.cpp) in GGUF's terms: metadata
  // under GGUF keys, tensors under GGUF names whose data lives in `storage` (mapped files, owned
  // copies), which the description keeps alive. version() is 0: no GGUF file was read.
  static std::shared_ptr<GgufFile> assemble(const std::string& path, std::map<std::string, GgufValue> metadata,
                                            std::vector<GgufTensor> tensors,
                                            std::vector<std::shared_ptr<const void>> storage);
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  const std::string& path() const { return path_; }
  uint64_t file_size() const { return size_; }
  uint64_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }

  // MappedFile::release for tensor data of a GGUF file; 0 (nothing dropped) for assembled
  // descriptions, whose data may live in owned copies.
  uint64_t release_pages(const void* p, uint64_t bytes) const { return mapping_ ? mapping_->release(p, bytes) : 0; }

  const GgufValue* find(const std::string& key) const;
  const GgufTensor* tensor(const std::string& name) const;

 private:
  GgufFile() = default;
  void parse();

  std::string path_;
  std::shared_ptr<MappedFile> mapping_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  std::vector<std::shared_ptr<const void>> storage_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Name of a ggml tensor type code ("Q4_K", "F16", ...), for error messages.
const char* ggml_type_name(uint32_t type);

}  // namespace chai
