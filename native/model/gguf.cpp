#include "gguf.h"

#include <cstring>
#include <limits>

#include "core/error.h"

namespace chai {
namespace {

enum : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// ggml type codes of the tensor types we can compute with.
enum : uint32_t {
  kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ4_0 = 2, kGgmlQ4_1 = 3, kGgmlQ5_0 = 6, kGgmlQ5_1 = 7, kGgmlQ8_0 = 8,
  kGgmlQ2_K = 10, kGgmlQ3_K = 11, kGgmlQ4_K = 12, kGgmlQ5_K = 13, kGgmlQ6_K = 14, kGgmlIQ4_NL = 20,
  kGgmlIQ4_XS = 23, kGgmlBF16 = 30,
};

[[noreturn]] void bad(const std::string& what) { fail(ErrorCode::ModelFormat, "GGUF: " + what); }

// A cursor over the mapped header that refuses to step past the end of the file.
class Reader {
 public:
  Reader(const uint8_t* base, uint64_t size) : base_(base), size_(size) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const char* what) {
    if (n > remaining())
      bad(std::string("file truncated while reading ") + what + " at byte " + std::to_string(pos_) + " (needs " +
          std::to_string(n) + " bytes, " + std::to_string(remaining()) + " left)");
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(base_ + pos_), size_t(n));
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

size_t scalar_size(uint32_t type) {
  switch (type) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: return 8;
    default: return 0;
  }
}

GgufValue read_scalar(Reader& r, uint32_t type, const std::string& key) {
  GgufValue v;
  v.gguf_type = type;
  switch (type) {
    case kU8: v.u = r.read<uint8_t>(key.c_str()); break;
    case kU16: v.u = r.read<uint16_t>(key.c_str()); break;
    case kU32: v.u = r.read<uint32_t>(key.c_str()); break;
    case kU64: v.u = r.read<uint64_t>(key.c_str()); break;
    case kI8: v.kind = GgufValue::Kind::Int; v.i = r.read<int8_t>(key.c_str()); break;
    case kI16: v.kind = GgufValue::Kind::Int; v.i = r.read<int16_t>(key.c_str()); break;
    case kI32: v.kind = GgufValue::Kind::Int; v.i = r.read<int32_t>(key.c_str()); break;
    case kI64: v.kind = GgufValue::Kind::Int; v.i = r.read<int64_t>(key.c_str()); break;
    case kF32: v.kind = GgufValue::Kind::Float; v.f = r.read<float>(key.c_str()); break;
    case kF64: v.kind = GgufValue::Kind::Float; v.f = r.read<double>(key.c_str()); break;
    case kBool: {
      v.kind = GgufValue::Kind::Bool;
      const uint8_t b = r.read<uint8_t>(key.c_str());
      if (b > 1) bad("metadata '" + key + "' has a bool byte of " + std::to_string(b));
      v.b = b == 1;
      break;
    }
    case kString: v.kind = GgufValue::Kind::String; v.s = r.string(key.c_str()); break;
    default: bad("metadata '" + key + "' has unknown value type " + std::to_string(type));
  }
  return v;
}

GgufValue read_value(Reader& r, uint32_t type, const std::string& key) {
  if (type != kArray) return read_scalar(r, type, key);
  GgufValue v;
  v.kind = GgufValue::Kind::Array;
  v.gguf_type = r.read<uint32_t>(key.c_str());
  const uint64_t n = r.read<uint64_t>(key.c_str());
  if (v.gguf_type == kArray) bad("metadata '" + key + "' is a nested array, which this reader does not accept");
  // Each element takes at least its scalar size (8 bytes of length for strings): bound n first.
  const uint64_t min_element = v.gguf_type == kString ? 8 : scalar_size(v.gguf_type);
  if (min_element == 0) bad("metadata '" + key + "' is an array of unknown type " + std::to_string(v.gguf_type));
  if (n > r.remaining() / min_element)
    bad("metadata '" + key + "' claims " + std::to_string(n) + " elements, more than the file can hold");
  v.items.reserve(size_t(n));
  for (uint64_t i = 0; i < n; ++i) v.items.push_back(read_scalar(r, v.gguf_type, key));
  return v;
}

bool dtype_for_ggml(uint32_t type, DType* out) {
  switch (type) {
    case kGgmlF32: *out = DType::F32; return true;
    case kGgmlF16: *out = DType::F16; return true;
    case kGgmlBF16: *out = DType::BF16; return true;
    case kGgmlQ8_0: *out = DType::Q8_0; return true;
    case kGgmlQ4_0: *out = DType::Q4_0; return true;
    case kGgmlQ4_1: *out = DType::Q4_1; return true;
    case kGgmlQ5_0: *out = DType::Q5_0; return true;
    case kGgmlQ5_1: *out = DType::Q5_1; return true;
    case kGgmlQ2_K: *out = DType::Q2_K; return true;
    case kGgmlQ3_K: *out = DType::Q3_K; return true;
    case kGgmlQ4_K: *out = DType::Q4_K; return true;
    case kGgmlQ5_K: *out = DType::Q5_K; return true;
    case kGgmlQ6_K: *out = DType::Q6_K; return true;
    case kGgmlIQ4_NL: *out = DType::IQ4_NL; return true;
    case kGgmlIQ4_XS: *out = DType::IQ4_XS; return true;
    default: return false;
  }
}

}  // namespace

const char* ggml_type_name(uint32_t type) {
  static const char* names[] = {"F32",  "F16",  "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
                                "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS",
                                "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64",
                                "IQ1_M", "BF16"};
  return type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}

int64_t GgufTensor::rows() const {
  int64_t r = 1;
  for (size_t d = 1; d < dims.size(); ++d) r *= dims[d];
  return r;
}

std::shared_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::shared_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  file->mapping_ = MappedFile::open(path);
  file->base_ = file->mapping_->data();
  file->size_ = file->mapping_->size();
  if (file->size_ < 24) bad("'" + path + "' is " + std::to_string(file->size_) + " bytes, too short for a GGUF header");
  file->parse();
  return file;
}

std::shared_ptr<GgufFile> GgufFile::assemble(const std::string& path, std::map<std::string, GgufValue> metadata,
                                             std::vector<GgufTensor> tensors,
                                             std::vector<std::shared_ptr<const void>> storage) {
  std::shared_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  file->metadata_ = std::move(metadata);
  file->storage_ = std::move(storage);
  for (auto& t : tensors) {
    file->size_ += t.bytes;
    if (!file->tensor_index_.emplace(t.name, file->tensors_.size()).second)
      fail(ErrorCode::Internal, "assembled model has tensor '" + t.name + "' twice");
    file->tensors_.push_back(std::move(t));
  }
  return file;
}

void GgufFile::parse() {
  Reader r(base_, size_);
  if (std::memcmp(base_, "GGUF", 4) != 0) bad("'" + path_ + "' does not start with the GGUF magic");
  r.read<uint32_t>("magic");
  version_ = r.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    bad("version " + std::to_string(version_) + " is not supported (versions 2 and 3 are)");
  const uint64_t n_tensors = r.read<uint64_t>("tensor count");
  const uint64_t n_kv = r.read<uint64_t>("metadata count");
  // Every key-value pair takes at least 12 bytes, every tensor record at least 24.
  if (n_kv > r.remaining() / 12) bad("metadata count " + std::to_string(n_kv) + " exceeds what the file can hold");
  if (n_tensors > r.remaining() / 24) bad("tensor count " + std::to_string(n_tensors) + " exceeds what the file can hold");

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = r.string("metadata key");
    if (key.empty()) bad("metadata entry " + std::to_string(k) + " has an empty key");
    const uint32_t type = r.read<uint32_t>("metadata type");
    GgufValue value = read_value(r, type, key);
    if (!metadata_.emplace(key, std::move(value)).second) bad("metadata key '" + key + "' appears twice");
  }

  if (const GgufValue* a = find("general.alignment")) {
    // The GGUF spec asks for a multiple of 8; anything less would leave tensors misaligned for
    // the typed loads that read them (f32 needs 4 bytes, the mapping itself is page-aligned).
    if (!a->is_integer() || a->as_int() < 8 || (a->as_int() & (a->as_int() - 1)) != 0 || a->as_int() > 65536)
      bad("general.alignment must be a power of two from 8 to 65536, got " +
          (a->is_integer() ? std::to_string(a->as_int()) : std::string("a non-integer")));
    alignment_ = uint64_t(a->as_int());
  }

  for (uint64_t t = 0; t < n_tensors; ++t) {
    GgufTensor info;
    info.name = r.string("tensor name");
    const uint32_t n_dims = r.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > 4)
      bad("tensor '" + info.name + "' has " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = r.read<uint64_t>("tensor dimension");
      if (dim == 0 || dim > (uint64_t(1) << 40) || numel > uint64_t(std::numeric_limits<int64_t>::max()) / dim)
        bad("tensor '" + info.name + "' has an invalid dimension " + std::to_string(dim));
      numel *= dim;
      info.dims.push_back(int64_t(dim));
    }
    info.ggml_type = r.read<uint32_t>("tensor type");
    info.offset = r.read<uint64_t>("tensor offset");
    if (!dtype_for_ggml(info.ggml_type, &info.dtype))
      bad("tensor '" + info.name + "' has type " + ggml_type_name(info.ggml_type) + " (" +
          std::to_string(info.ggml_type) + "); supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, "
          "Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS");
    if (info.dims[0] % dtype_block_values(info.dtype) != 0)
      bad("tensor '" + info.name + "' is " + ggml_type_name(info.ggml_type) + " with rows of " +
          std::to_string(info.dims[0]) + " values, not a multiple of its block of " +
          std::to_string(dtype_block_values(info.dtype)));
    // rows × row bytes can wrap for huge dimensions even when the element count fits.
    const uint64_t row_bytes = dtype_row_bytes(info.dtype, info.dims[0]);
    const uint64_t rows = uint64_t(info.rows());
    if (row_bytes != 0 && rows > std::numeric_limits<uint64_t>::max() / row_bytes)
      bad("tensor '" + info.name + "' is too large: its byte count overflows 64 bits");
    info.bytes = rows * row_bytes;
    if (info.offset % alignment_ != 0)
      bad("tensor '" + info.name + "' offset " + std::to_string(info.offset) + " is not aligned to " +
          std::to_string(alignment_));
    if (!tensor_index_.emplace(info.name, tensors_.size()).second) bad("tensor '" + info.name + "' appears twice");
    tensors_.push_back(std::move(info));
  }

  const uint64_t data_start = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (data_start > size_) bad("file truncated before the tensor data section");
  for (auto& t : tensors_) {
    if (t.offset > size_ - data_start || t.bytes > size_ - data_start - t.offset)
      bad("tensor '" + t.name + "' (" + std::to_string(t.bytes) + " bytes at data offset " + std::to_string(t.offset) +
          ") extends past the end of the file (" + std::to_string(size_) + " bytes): the file is truncated or corrupt");
    t.data = base_ + data_start + t.offset;
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace chai
