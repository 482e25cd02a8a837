#include "kv_cache.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace chai {

KvPool::KvPool(Backend& backend, int head_dim, int page_tokens, DType dtype, size_t max_pages)
    : backend_(backend), head_dim_(head_dim), page_tokens_(page_tokens), dtype_(dtype), max_pages_(max_pages) {
  CHAI_REQUIRE(head_dim > 0 && page_tokens > 0, ErrorCode::InvalidArgument, "KV pool: head_dim and page_tokens must be > 0");
  CHAI_REQUIRE(dtype == DType::F32 || dtype == DType::F16, ErrorCode::InvalidArgument,
          std::string("the KV cache can be f32 or f16, not ") + dtype_name(dtype));
}

KvPool::~KvPool() {
  if (base_) backend_.release(base_);
}

void KvPool::grow(size_t min_capacity) {
  // Doubling keeps the number of moves logarithmic; ids are offsets, so they survive a move.
  size_t capacity = std::max(min_capacity, std::max<size_t>(64, capacity_ * 2));
  if (max_pages_ > 0) capacity = std::min(capacity, std::max(min_capacity, max_pages_));
  std::unique_lock<std::shared_mutex> moving(arena_mutex_);
  void* grown = backend_.alloc(capacity * page_bytes());
  if (base_) {
    backend_.copy(grown, base_, capacity_ * page_bytes());
    backend_.release(base_);
  }
  base_ = grown;
  holders_.resize(capacity, 0);
  for (size_t id = capacity; id-- > capacity_;) free_.push_back(int32_t(id));
  capacity_ = capacity;
}

std::vector<int32_t> KvPool::allocate(size_t count) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (max_pages_ > 0 && in_use_ + count > max_pages_ && reclaim_) {
    const size_t missing = in_use_ + count - max_pages_;
    auto reclaim = reclaim_;
    lock.unlock();  // the reclaimer releases pages, which takes the lock
    reclaim(missing);
    lock.lock();
  }
  CHAI_REQUIRE(in_use_ + count < size_t(INT32_MAX), ErrorCode::DeviceOom, "KV pool: page ids exhausted");
  CHAI_REQUIRE(max_pages_ == 0 || in_use_ + count <= max_pages_, ErrorCode::DeviceOom,
               "the KV cache is full: " + std::to_string(count) + " more pages asked, " + std::to_string(in_use_) + " of " +
                   std::to_string(max_pages_) + " in use; finish or dispose other sessions, or load the model with a larger kvCacheBytes");
  if (free_.size() < count) grow(in_use_ + count);
  std::vector<int32_t> pages(free_.end() - std::ptrdiff_t(count), free_.end());
  free_.resize(free_.size() - count);
  for (int32_t p : pages) holders_[size_t(p)] = 1;
  in_use_ += count;
  return pages;
}

void KvPool::retain(const std::vector<int32_t>& pages) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (int32_t p : pages) {
    if (p < 0) continue;
    CHAI_REQUIRE(size_t(p) < capacity_ && holders_[size_t(p)] > 0, ErrorCode::Internal, "KV pool: a free page cannot be shared");
    ++holders_[size_t(p)];
  }
}

void KvPool::release(const std::vector<int32_t>& pages) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (int32_t p : pages) {
    if (p < 0 || --holders_[size_t(p)] > 0) continue;
    free_.push_back(p);
    --in_use_;
  }
}

int KvPool::holders(int32_t page) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return page >= 0 && size_t(page) < capacity_ ? holders_[size_t(page)] : 0;
}

void KvPool::copy_page(int32_t to, int32_t from) {
  auto still = reading();  // the arena must not move during the copy
  char* base = static_cast<char*>(base_);
  backend_.copy(base + size_t(to) * page_bytes(), base + size_t(from) * page_bytes(), page_bytes());
}

void KvPool::set_reclaimer(std::function<void(size_t)> reclaim) {
  std::lock_guard<std::mutex> lock(mutex_);
  reclaim_ = std::move(reclaim);
}

size_t KvPool::pages_in_use() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return in_use_;
}

size_t KvPool::capacity_pages() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return capacity_;
}

namespace {
int checked_max_tokens(int max_tokens) {
  CHAI_REQUIRE(max_tokens > 0 && max_tokens <= SequenceKv::kMaxTokens, ErrorCode::InvalidArgument,
               "maxTokens must be in 1.." + std::to_string(SequenceKv::kMaxTokens) + ", got " + std::to_string(max_tokens));
  return max_tokens;
}
}  // namespace

SequenceKv::SequenceKv(KvPool& pool, int n_layers, int n_kv_heads, int max_tokens)
    : pool_(pool),
      n_layers_(n_layers),
      n_kv_heads_(n_kv_heads),
      max_tokens_(checked_max_tokens(max_tokens)),
      // In 64 bits: max_tokens + page_tokens - 1 overflows an int near INT_MAX.
      max_pages_(int((int64_t(max_tokens_) + pool.page_tokens() - 1) / pool.page_tokens())),
      k_state_(size_t(n_layers) * n_kv_heads, KeyState::Kept) {
  CHAI_REQUIRE(n_layers > 0 && n_kv_heads > 0, ErrorCode::InvalidArgument, "KV cache: layers and KV heads must be > 0");
}

void SequenceKv::grow_tables(int pages) {
  if (pages <= table_pages_) return;
  const int grown = int(std::min<int64_t>(max_pages_, std::max<int64_t>(pages, int64_t(table_pages_) * 2)));
  const size_t rows = size_t(n_layers_) * size_t(n_kv_heads_);
  // Both wider tables exist before either replaces its original: an allocation failure changes nothing.
  auto widen = [&](const std::vector<int32_t>& table) {
    std::vector<int32_t> wider(rows * size_t(grown), -1);
    for (size_t r = 0; r < rows; ++r)
      std::copy_n(table.begin() + std::ptrdiff_t(r * size_t(table_pages_)), table_pages_,
                  wider.begin() + std::ptrdiff_t(r * size_t(grown)));
    return wider;
  };
  std::vector<int32_t> k = widen(k_table_), v = widen(v_table_);
  k_table_.swap(k);
  v_table_.swap(v);
  table_pages_ = grown;
  ++version_;
}

SequenceKv::~SequenceKv() {
  pool_.release(k_table_);
  pool_.release(v_table_);
}

void SequenceKv::reserve(int n_tokens) {
  CHAI_REQUIRE(n_tokens <= max_tokens_, ErrorCode::ContextOverflow,
          "the sequence would hold " + std::to_string(n_tokens) + " tokens but the session allows " +
              std::to_string(max_tokens_) + " (maxTokens)");
  CHAI_REQUIRE(n_tokens >= 0, ErrorCode::InvalidArgument, "a sequence cannot hold a negative number of tokens");
  const int pages = int((int64_t(n_tokens) + pool_.page_tokens() - 1) / pool_.page_tokens());
  if (pages <= reserved_pages_) return;
  size_t needed = 0;
  for (int l = 0; l < n_layers_; ++l)
    for (int h = 0; h < n_kv_heads_; ++h) needed += size_t(pages - reserved_pages_) * (keeps_keys(l, h) ? 2 : 1);
  grow_tables(pages);  // longer rows of -1 entries: harmless if the allocation below fails
  std::vector<int32_t> fresh = pool_.allocate(needed);  // may throw DeviceOom: no page taken yet
  size_t next = 0;
  for (int l = 0; l < n_layers_; ++l)
    for (int h = 0; h < n_kv_heads_; ++h)
      for (int p = reserved_pages_; p < pages; ++p) {
        v_page(l, h, p) = fresh[next++];
        if (keeps_keys(l, h)) k_page(l, h, p) = fresh[next++];
      }
  reserved_pages_ = pages;
  ++version_;
}

void SequenceKv::release_keys(int layer, int head) {
  std::vector<int32_t> pages;
  for (int p = 0; p < table_pages_; ++p) {
    int32_t& id = k_page(layer, head, p);
    if (id >= 0) pages.push_back(id);
    id = -1;
  }
  pool_.release(pages);
}

void SequenceKv::defer_keys(int layer) {
  CHAI_REQUIRE(reserved_pages_ == 0, ErrorCode::Internal, "keys can only be deferred before any page is reserved");
  for (int h = 0; h < n_kv_heads_; ++h) k_state_[size_t(layer) * n_kv_heads_ + h] = KeyState::Deferred;
}

void SequenceKv::decide_keys(int layer, const std::vector<bool>& keep) {
  size_t fresh_needed = 0;
  for (int h = 0; h < n_kv_heads_; ++h)
    if (keep[size_t(h)] && key_state(layer, h) == KeyState::Deferred) fresh_needed += size_t(reserved_pages_);
  std::vector<int32_t> fresh = pool_.allocate(fresh_needed);  // may throw DeviceOom: nothing changed yet
  size_t next = 0;
  for (int h = 0; h < n_kv_heads_; ++h) {
    KeyState& state = k_state_[size_t(layer) * n_kv_heads_ + h];
    if (keep[size_t(h)]) {
      if (state == KeyState::Deferred)
        for (int p = 0; p < reserved_pages_; ++p) k_page(layer, h, p) = fresh[next++];
      CHAI_REQUIRE(state != KeyState::Dropped, ErrorCode::Internal, "keys of a dropped head cannot come back");
      state = KeyState::Kept;
    } else {
      if (state == KeyState::Kept) release_keys(layer, h);
      state = KeyState::Dropped;
    }
  }
  ++version_;
}

void SequenceKv::clear() {
  pool_.release(k_table_);
  pool_.release(v_table_);
  std::fill(k_table_.begin(), k_table_.end(), -1);
  std::fill(v_table_.begin(), v_table_.end(), -1);
  std::fill(k_state_.begin(), k_state_.end(), KeyState::Kept);
  reserved_pages_ = 0;
  n_tokens_ = 0;
  ++version_;
}

PageColumn SequenceKv::column(int page) const {
  CHAI_REQUIRE(page >= 0 && page < reserved_pages_, ErrorCode::Internal, "page index outside the reserved pages");
  const int rows = n_layers_ * n_kv_heads_;
  PageColumn c;
  for (int r = 0; r < rows; ++r) {
    c.k.push_back(k_table_[slot(r, page)]);
    c.v.push_back(v_table_[slot(r, page)]);
  }
  return c;
}

void SequenceKv::adopt(const std::vector<PageColumn>& columns, int n_tokens) {
  CHAI_REQUIRE(reserved_pages_ == 0, ErrorCode::InvalidArgument, "a cached prefix can only start an empty sequence");
  const int pages = int(columns.size());
  CHAI_REQUIRE(pages > 0 && n_tokens > (pages - 1) * pool_.page_tokens() && n_tokens <= pages * pool_.page_tokens() &&
                   n_tokens <= max_tokens_,
               ErrorCode::Internal, "adopted pages do not fit the adopted tokens");
  const int rows = n_layers_ * n_kv_heads_;
  for (const PageColumn& c : columns)
    for (int r = 0; r < rows; ++r)
      CHAI_REQUIRE(c.v[size_t(r)] >= 0 && (c.k[size_t(r)] >= 0) == (columns[0].k[size_t(r)] >= 0), ErrorCode::Internal,
                   "a cached prefix keeps keys for different heads on different pages");
  grow_tables(pages);
  for (int r = 0; r < rows; ++r) {
    k_state_[size_t(r)] = columns[0].k[size_t(r)] >= 0 ? KeyState::Kept : KeyState::Dropped;
    for (int p = 0; p < pages; ++p) {
      k_table_[slot(r, p)] = columns[size_t(p)].k[size_t(r)];
      v_table_[slot(r, p)] = columns[size_t(p)].v[size_t(r)];
    }
  }
  reserved_pages_ = pages;
  n_tokens_ = n_tokens;
  ++version_;
}

void SequenceKv::unshare(int pos0, int n) {
  if (n <= 0) return;
  const int first = pos0 / pool_.page_tokens();
  const int last = std::min(reserved_pages_ - 1, (pos0 + n - 1) / pool_.page_tokens());
  std::vector<int32_t*> shared;  // table entries whose page has other holders
  for (int p = first; p <= last; ++p)
    for (int r = 0; r < n_layers_ * n_kv_heads_; ++r)
      for (std::vector<int32_t>* table : {&k_table_, &v_table_}) {
        int32_t& id = (*table)[slot(r, p)];
        if (id >= 0 && pool_.holders(id) > 1) shared.push_back(&id);
      }
  if (shared.empty()) return;
  const std::vector<int32_t> fresh = pool_.allocate(shared.size());  // may throw DeviceOom: nothing changed yet
  std::vector<int32_t> old(shared.size());
  for (size_t i = 0; i < shared.size(); ++i) {
    old[i] = *shared[i];
    pool_.copy_page(fresh[i], old[i]);
    *shared[i] = fresh[i];
  }
  pool_.release(old);
  ++version_;
}

KvStats SequenceKv::stats() const {
  KvStats s;
  const size_t page = pool_.page_bytes();
  for (int32_t id : k_table_) s.k_bytes += id >= 0 ? page : 0;
  for (int32_t id : v_table_) s.v_bytes += id >= 0 ? page : 0;
  s.k_bytes_full = s.v_bytes_full = size_t(reserved_pages_) * n_layers_ * n_kv_heads_ * page;
  s.tokens = size_t(n_tokens_);
  return s;
}

}  // namespace chai
