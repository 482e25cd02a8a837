// The op entry points every backend shares: argument checks (InvalidArgument naming the bad shape
// or type), then the backend's kernel.
#include "backend.h"
#include "error.h"
#include "timing.h"

namespace chai {
namespace {

void require_f32(const TensorView& t, const char* what) {
  CHAI_REQUIRE(t.dtype == DType::F32, ErrorCode::InvalidArgument,
          std::string(what) + " must be f32, got " + t.shape_string());
}

void require_data(const TensorView& t, const char* what) {
  CHAI_REQUIRE(t.data != nullptr && t.rows > 0 && t.cols > 0, ErrorCode::InvalidArgument,
          std::string(what) + " must be a non-empty tensor, got " + t.shape_string());
}

void check_matmul_args(const TensorView& x, const TensorView& w, const TensorView& y) {
  require_data(x, "matmul input x");
  require_data(w, "matmul weight w");
  require_data(y, "matmul output y");
  require_f32(x, "matmul input x");
  require_f32(y, "matmul output y");
  CHAI_REQUIRE(x.cols == w.cols && y.rows == x.rows && y.cols == w.rows, ErrorCode::InvalidArgument,
          "matmul shapes do not fit: x " + x.shape_string() + " · w " + w.shape_string() + "ᵀ → y " +
              y.shape_string() + " (need x[n,k], w[m,k], y[n,m])");
}

void check_rmsnorm_args(const TensorView& x, const TensorView& weight, const TensorView& y) {
  require_data(x, "rmsnorm input x");
  require_data(weight, "rmsnorm weight");
  require_data(y, "rmsnorm output y");
  require_f32(x, "rmsnorm input x");
  require_f32(weight, "rmsnorm weight");
  require_f32(y, "rmsnorm output y");
  CHAI_REQUIRE(weight.numel() == x.cols && y.rows == x.rows && y.cols == x.cols, ErrorCode::InvalidArgument,
          "rmsnorm shapes do not fit: x " + x.shape_string() + ", weight " + weight.shape_string() + ", y " +
              y.shape_string());
}

void check_softmax_args(const TensorView& x) {
  require_data(x, "softmax input");
  require_f32(x, "softmax input");
}

void check_embed_args(const TensorView& table, const int32_t* tokens, const TensorView& out) {
  require_data(table, "embedding table");
  require_data(out, "embedding output");
  require_f32(out, "embedding output");
  CHAI_REQUIRE(tokens != nullptr && out.cols == table.cols, ErrorCode::InvalidArgument,
          "embedding shapes do not fit: table " + table.shape_string() + ", out " + out.shape_string());
}

void check_rope_args(const TensorView& x, int head_dim, const int32_t* positions, float base) {
  require_data(x, "rope input");
  require_f32(x, "rope input");
  CHAI_REQUIRE(head_dim > 0 && head_dim % 2 == 0 && x.cols % head_dim == 0 && positions != nullptr && base > 0,
          ErrorCode::InvalidArgument,
          "rope: head_dim must be even and divide the row (" + x.shape_string() + ", head_dim " +
              std::to_string(head_dim) + "), positions given, base > 0");
}

void check_same_f32(const TensorView& a, const TensorView& b, const char* op) {
  require_data(a, op);
  require_data(b, op);
  require_f32(a, op);
  require_f32(b, op);
  CHAI_REQUIRE(a.rows == b.rows && a.cols == b.cols, ErrorCode::InvalidArgument,
          std::string(op) + ": shapes differ, " + a.shape_string() + " vs " + b.shape_string());
}

void check_attention_args(const AttentionParams& p) {
  CHAI_REQUIRE(p.q && p.out && p.pool && p.seqs, ErrorCode::InvalidArgument, "attention: a required pointer is null");
  CHAI_REQUIRE(p.kv_dtype == DType::F32 || p.kv_dtype == DType::F16, ErrorCode::InvalidArgument,
          std::string("attention: the KV cache must be f32 or f16, not ") + dtype_name(p.kv_dtype));
  CHAI_REQUIRE(p.n_seqs > 0 && p.n_heads > 0 && p.n_kv_heads > 0 && p.n_heads % p.n_kv_heads == 0 && p.head_dim > 0 &&
              p.page_tokens > 0 && p.max_n_q > 0 && p.max_clusters > 0 && p.max_clusters <= p.n_heads &&
              p.max_members > 0 && p.max_members <= p.n_heads,
          ErrorCode::InvalidArgument,
          "attention: inconsistent sizes (sequences " + std::to_string(p.n_seqs) + ", heads " + std::to_string(p.n_heads) +
              "/" + std::to_string(p.n_kv_heads) + ", page " + std::to_string(p.page_tokens) + ", bounds " +
              std::to_string(p.max_n_q) + "/" + std::to_string(p.max_clusters) + "/" + std::to_string(p.max_members) + ")");
  CHAI_REQUIRE(p.version >= 1 && p.version <= kAttentionVersions && p.split_seqs >= 0 && p.split_seqs <= p.n_seqs &&
                   (p.version >= 2 || p.split_seqs == 0) && (p.partial_slots == 0 || p.partials),
               ErrorCode::InvalidArgument,
               "attention: version " + std::to_string(p.version) + " with " + std::to_string(p.split_seqs) +
                   " split sequences and " + std::to_string(p.partial_slots) + " partial slots is not a valid plan");
}

void check_store_kv_args(const KvStoreParams& p) {
  CHAI_REQUIRE(p.src && p.pool && p.table, ErrorCode::InvalidArgument, "store_kv: a required pointer is null");
  CHAI_REQUIRE(p.kv_dtype == DType::F32 || p.kv_dtype == DType::F16, ErrorCode::InvalidArgument,
          std::string("store_kv: the KV cache must be f32 or f16, not ") + dtype_name(p.kv_dtype));
  CHAI_REQUIRE(p.n > 0 && p.n_heads > 0 && p.head_dim > 0 && p.pos0 >= 0 && p.page_tokens > 0 &&
              p.max_pages * p.page_tokens >= p.pos0 + p.n,
          ErrorCode::InvalidArgument, "store_kv: inconsistent sizes");
}

void check_head_features_args(const HeadFeatureParams& p) {
  CHAI_REQUIRE(p.q && p.k && p.out, ErrorCode::InvalidArgument, "head_features: a required pointer is null");
  CHAI_REQUIRE(p.t0 >= 1 && p.n_heads >= 1 && p.n_kv_heads >= 1 && p.n_heads % p.n_kv_heads == 0 && p.head_dim >= 1,
          ErrorCode::InvalidArgument, "head_features: inconsistent sizes");
}

}  // namespace

void Backend::matmul(const TensorView& x, const TensorView& w, const TensorView& y) {
  check_matmul_args(x, w, y);
  run_matmul(x, w, y);
}

void Backend::rmsnorm(const TensorView& x, const TensorView& weight, float eps, const TensorView& y) {
  check_rmsnorm_args(x, weight, y);
  run_rmsnorm(x, weight, eps, y);
}

void Backend::softmax_rows(const TensorView& x) {
  check_softmax_args(x);
  run_softmax_rows(x);
}

void Backend::embed(const TensorView& table, const int32_t* tokens, const TensorView& out) {
  check_embed_args(table, tokens, out);
  run_embed(table, tokens, out);
}

void Backend::rope(const TensorView& x, int head_dim, const int32_t* positions, float base, RopeStyle style,
                   const float* freq_factors) {
  check_rope_args(x, head_dim, positions, base);
  run_rope(x, head_dim, positions, base, style, freq_factors);
}

void Backend::swiglu(const TensorView& gate, const TensorView& up) {
  check_same_f32(gate, up, "swiglu");
  run_swiglu(gate, up);
}

void Backend::add(const TensorView& x, const TensorView& y) {
  check_same_f32(x, y, "add");
  run_add(x, y);
}

void Backend::add_bias(const TensorView& x, const TensorView& bias) {
  require_data(x, "add_bias input");
  require_data(bias, "add_bias bias");
  require_f32(x, "add_bias input");
  require_f32(bias, "add_bias bias");
  CHAI_REQUIRE(bias.numel() == x.cols, ErrorCode::InvalidArgument,
          "add_bias: the bias " + bias.shape_string() + " must have one value per column of " + x.shape_string());
  run_add_bias(x, bias);
}

void Backend::attention(const AttentionParams& p) {
  check_attention_args(p);
  run_attention(p);
}

void Backend::store_kv(const KvStoreParams& p) {
  check_store_kv_args(p);
  run_store_kv(p);
}

void Backend::head_features(const HeadFeatureParams& p) {
  check_head_features_args(p);
  run_head_features(p);
}

double Backend::seconds_per_call(const std::function<void(int)>& call, int calls, int repeats) {
  CHAI_REQUIRE(calls >= 1 && repeats >= 1, ErrorCode::InvalidArgument,
               "seconds_per_call needs at least one call and one repeat, got " + std::to_string(calls) + " and " +
                   std::to_string(repeats));
  return time_calls(call, calls, repeats);
}

double Backend::time_calls(const std::function<void(int)>& call, int calls, int repeats) {
  const double seconds = median_host_seconds(
      [&] {
        for (int i = 0; i < calls; ++i) call(i);
        synchronize();
      },
      repeats);
  return seconds / calls;
}

}  // namespace chai
