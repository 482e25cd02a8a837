// A seeded fuzz of the GGUF reader and model loader: mutated copies of the test model (truncations,
// bit flips, huge counts, lengths and dimensions, wrong type codes, bad strings, bad alignment)
// must each load or fail with chai::Error: no other exception, crash or sanitizer report. A file
// that loads also evaluates a few tokens (a valid header may still hold odd metadata).
// Usage: test_gguf_fuzz [iterations] [seed]; CHAI_GGUF_FUZZ_ITERATIONS sets the default count.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "engine/session.h"
#include "model/llama.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

namespace {

// Where the fields of the header sit, so mutations can hit them rather than only random bytes.
struct Layout {
  std::vector<size_t> u64_fields;    // counts, string lengths, array lengths, dimensions, offsets
  std::vector<size_t> type_fields;   // metadata value types, array element types, tensor types, n_dims
  std::vector<size_t> string_bytes;  // the first byte of each key and tensor name
  size_t integer_key_17 = 0;         // a 17-character key with a u32 value ("llama.block_count")
  size_t header_end = 0;
};

uint64_t u64_at(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v;
  std::memcpy(&v, b.data() + at, 8);
  return v;
}

uint32_t u32_at(const std::vector<uint8_t>& b, size_t at) {
  uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}

Layout layout_of(const std::vector<uint8_t>& b) {
  Layout l;
  size_t at = 8;
  const uint64_t n_tensors = u64_at(b, at), n_kv = u64_at(b, at + 8);
  l.u64_fields = {at, at + 8};
  at += 16;
  auto string = [&] {
    l.u64_fields.push_back(at);
    const uint64_t n = u64_at(b, at);
    l.string_bytes.push_back(at + 8);
    at += 8 + n;
    return n;
  };
  const size_t scalar[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
  for (uint64_t k = 0; k < n_kv; ++k) {
    const size_t key_at = at;
    const uint64_t key_length = string();
    l.type_fields.push_back(at);
    const uint32_t type = u32_at(b, at);
    at += 4;
    if (key_length == 17 && type == 4 && !l.integer_key_17) l.integer_key_17 = key_at;
    if (type == 8) {
      string();
    } else if (type == 9) {
      l.type_fields.push_back(at);
      const uint32_t inner = u32_at(b, at);
      l.u64_fields.push_back(at + 4);
      const uint64_t n = u64_at(b, at + 4);
      at += 12;
      for (uint64_t i = 0; i < n; ++i) {
        if (inner == 8) {
          const uint64_t len = u64_at(b, at);
          if (i < 4) l.u64_fields.push_back(at);
          at += 8 + len;
        } else {
          at += scalar[inner];
        }
      }
    } else {
      at += scalar[type];
    }
  }
  for (uint64_t t = 0; t < n_tensors; ++t) {
    string();
    l.type_fields.push_back(at);
    const uint32_t n_dims = u32_at(b, at);
    at += 4;
    for (uint32_t d = 0; d < n_dims; ++d, at += 8) l.u64_fields.push_back(at);
    l.type_fields.push_back(at);
    at += 4;
    l.u64_fields.push_back(at);
    at += 8;
  }
  l.header_end = at;
  return l;
}

void put_u64(std::vector<uint8_t>& b, size_t at, uint64_t v) { std::memcpy(b.data() + at, &v, 8); }
void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) { std::memcpy(b.data() + at, &v, 4); }

// One mutation of the original bytes, chosen and parameterised by rng.
std::vector<uint8_t> mutate(const std::vector<uint8_t>& original, const Layout& l, std::mt19937_64& rng) {
  std::vector<uint8_t> b = original;
  auto pick = [&](size_t n) { return size_t(rng() % n); };
  const uint64_t huge[] = {~uint64_t(0), uint64_t(1) << 63, uint64_t(1) << 62, uint64_t(1) << 40, uint64_t(1) << 32,
                           0x7fffffff, 0xffffffff, 0};
  switch (pick(7)) {
    case 0:  // truncation, mostly inside the header
      b.resize(pick(3) == 0 ? pick(b.size()) : pick(l.header_end + 64));
      break;
    case 1:  // bit flips in the header
      for (size_t n = 1 + pick(8); n-- > 0;) b[pick(l.header_end)] ^= uint8_t(1u << pick(8));
      break;
    case 2:  // a huge or zero count, length, dimension or offset
      put_u64(b, l.u64_fields[pick(l.u64_fields.size())], pick(2) ? huge[pick(8)] : rng());
      break;
    case 3: {  // a wrong type code
      const uint32_t codes[] = {9, 12, 13, 30, 31, 99, 0xffffffff, 2, 8};
      put_u32(b, l.type_fields[pick(l.type_fields.size())], pick(2) ? codes[pick(9)] : uint32_t(rng()));
      break;
    }
    case 4: {  // a bad string: invalid UTF-8, a NUL, or a length off by a little
      const size_t at = l.string_bytes[pick(l.string_bytes.size())];
      const uint8_t bad[] = {0xff, 0xc3, 0x00, 0x80, 0xed};
      if (pick(2)) b[at] = bad[pick(5)];
      else put_u64(b, at - 8, u64_at(b, at - 8) + 1 + pick(16));
      break;
    }
    case 5: {  // the alignment: rename a 17-character u32 key to general.alignment with an odd value
      if (l.integer_key_17) {
        std::memcpy(b.data() + l.integer_key_17 + 8, "general.alignment", 17);
        const uint32_t values[] = {0, 1, 2, 3, 4, 8, 16, 24, 64, 1u << 20};
        put_u32(b, l.integer_key_17 + 8 + 17 + 4, values[pick(10)]);
      }
      break;
    }
    default:  // random bytes anywhere, data included
      for (size_t n = 1 + pick(32); n-- > 0;) b[pick(b.size())] = uint8_t(rng());
      break;
  }
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  const char* from_env = std::getenv("CHAI_GGUF_FUZZ_ITERATIONS");
  const int iterations = argc > 1 ? std::atoi(argv[1]) : from_env ? std::atoi(from_env) : 400;
  const uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 20261130;
  Suite suite("gguf_fuzz");
  const std::string model = models_dir() + "stories260K.gguf";
  std::ifstream in(model, std::ios::binary);
  const std::vector<uint8_t> original((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (original.size() < 1024) {
    std::printf("FAIL cannot read %s\n", model.c_str());
    return 1;
  }
  const Layout layout = layout_of(original);
  const std::string file = "/tmp/chai-gguf-fuzz-" + std::to_string(getpid()) + ".gguf";
  auto cpu = make_cpu_backend(1);
  std::mt19937_64 rng(seed);
  int loaded = 0, rejected = 0, untyped = 0;
  for (int i = 0; i < iterations; ++i) {
    const std::vector<uint8_t> bytes = mutate(original, layout, rng);
    std::ofstream(file, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    try {
      auto m = LlamaModel::load(GgufFile::open(file));
      KvPool pool(*cpu, m->config().head_dim, 16);
      Session session(m->config(), m->weights(), *cpu, pool, std::min(8, m->config().n_ctx_train));
      session.evaluate({1, int32_t(m->config().n_vocab - 1)}, false);
      ++loaded;
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      ++untyped;
      std::printf("FAIL iteration %d (seed %llu): untyped exception: %s\n", i, (unsigned long long)seed, e.what());
    }
  }
  std::remove(file.c_str());
  std::printf("%d mutated files: %d loaded, %d rejected with a typed error, %d untyped\n", iterations, loaded, rejected, untyped);
  suite.check(untyped == 0, "every failure is a chai::Error");
  suite.check(rejected > iterations / 4, "most mutations are rejected (the mutator reaches the checks)");
  return suite.finish();
}
