// The KV cache: head-granular pages from one pool per backend, and per-sequence page tables.
// A page holds page_tokens rows of head_dim floats of ONE head's K or V, so a sequence can keep
// V for every KV head and K only for the heads that need it (CHAI), page by page.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "core/backend.h"

namespace chai {

class KvPool {
 public:
  // dtype: the element type of the cached rows, F32 or F16 (half the bytes, rounded to nearest).
  // max_pages caps the pool (0: it grows while memory lasts); past the cap allocate() throws
  // DeviceOom, so a server can admit work by pages free instead of failing mid-generation.
  KvPool(Backend& backend, int head_dim, int page_tokens, DType dtype = DType::F32, size_t max_pages = 0);
  ~KvPool();
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;

  int head_dim() const { return head_dim_; }
  int page_tokens() const { return page_tokens_; }
  DType dtype() const { return dtype_; }
  size_t page_bytes() const { return size_t(page_tokens_) * dtype_row_bytes(dtype_, head_dim_); }

  // Pages are reference-counted: allocate() hands out pages with one holder, retain() adds a
  // holder (a prefix cache keeping a sequence's pages, a sequence sharing cached ones), release()
  // drops one and frees the page with its last holder. Ids < 0 are skipped.
  // Allocates `count` pages at once (all or nothing: DeviceOom leaves the pool unchanged). When
  // the cap would be passed, the reclaimer (if set) is asked to free pages first.
  std::vector<int32_t> allocate(size_t count);
  void retain(const std::vector<int32_t>& pages);
  void release(const std::vector<int32_t>& pages);
  // Holders of a page (0: free). A page with more than one holder is shared and read-only.
  int holders(int32_t page) const;
  // Copies the rows of page `from` into page `to` (copy-on-write of a shared page).
  void copy_page(int32_t to, int32_t from);
  // Called without the pool's lock, with the number of pages missing under the cap; frees what it
  // can (pages that only a cache holds). One reclaimer per pool; an empty function removes it.
  void set_reclaimer(std::function<void(size_t)> reclaim);
  // Base of the arena. Growing moves it, so whoever reads pages holds reading() meanwhile.
  void* base() const { return base_; }
  std::shared_lock<std::shared_mutex> reading() const { return std::shared_lock<std::shared_mutex>(arena_mutex_); }
  Backend& backend() const { return backend_; }

  size_t pages_in_use() const;
  size_t capacity_pages() const;
  size_t max_pages() const { return max_pages_; }

 private:
  void grow(size_t min_capacity);

  Backend& backend_;
  int head_dim_;
  int page_tokens_;
  DType dtype_;
  size_t max_pages_;
  mutable std::mutex mutex_;               // free list and counters
  mutable std::shared_mutex arena_mutex_;  // exclusive while the arena moves
  void* base_ = nullptr;
  size_t capacity_ = 0;
  std::vector<int32_t> free_;
  std::vector<int32_t> holders_;  // per page id
  size_t in_use_ = 0;
  std::function<void(size_t)> reclaim_;
};

// The pages of one page index of a sequence (page_tokens token positions) over every layer and KV
// head, [n_layers * n_kv_heads] each: what a prefix cache keeps per cached page of tokens. k is -1
// where the head's keys are not kept (CHAI).
struct PageColumn {
  std::vector<int32_t> k, v;
  bool operator==(const PageColumn& o) const { return k == o.k && v == o.v; }
};

// Bytes a sequence's cache holds, and what a full cache (K and V for every KV head) would hold.
struct KvStats {
  size_t k_bytes = 0;
  size_t v_bytes = 0;
  size_t k_bytes_full = 0;
  size_t v_bytes_full = 0;
  size_t tokens = 0;
};

class SequenceKv {
 public:
  // Most tokens one sequence may hold (also bounded by the model's context where a session is made).
  static constexpr int kMaxTokens = 1 << 24;

  SequenceKv(KvPool& pool, int n_layers, int n_kv_heads, int max_tokens);
  ~SequenceKv();
  SequenceKv(const SequenceKv&) = delete;
  SequenceKv& operator=(const SequenceKv&) = delete;

  int max_tokens() const { return max_tokens_; }
  // Row length of the page tables: pages per (layer, KV head) they hold now. The tables start
  // empty and grow with reserve() (doubling, up to what max_tokens needs), so a session made with
  // a large maxTokens costs nothing until it holds tokens.
  int max_pages() const { return table_pages_; }

  // Makes room for tokens [0, n_tokens): pages for every V and every kept K.
  void reserve(int n_tokens);
  // CHAI: until a layer's clustering is known, its keys can wait (no pages); then
  // decide_keys() allocates pages for the KV heads to keep and releases those of the others.
  void defer_keys(int layer);
  void decide_keys(int layer, const std::vector<bool>& keep);
  bool keeps_keys(int layer, int kv_head) const { return key_state(layer, kv_head) == KeyState::Kept; }
  // Releases every page: an empty sequence with keys kept for every head.
  void clear();
  // Prefix caching. column(p): the pages of page index p (reserved). adopt(): an empty sequence
  // takes `columns` as its first pages, holding n_tokens tokens; it becomes the holder of the one
  // hold on each page that the caller passes on (a prefix cache match). Each head's keys count as
  // kept where the columns have K pages, dropped where not.
  PageColumn column(int page) const;
  void adopt(const std::vector<PageColumn>& columns, int n_tokens);
  // Before tokens [pos0, pos0 + n) are written: every reserved page they fall in that is shared
  // is replaced by a copy of its own (all or nothing: DeviceOom leaves the tables unchanged).
  void unshare(int pos0, int n);
  // Tokens whose K/V rows have been stored; truncating keeps the pages for reuse.
  void set_tokens(int n_tokens) { n_tokens_ = n_tokens; }
  int n_tokens() const { return n_tokens_; }
  // Changes whenever a page table changes, so copies of the tables know when to refresh.
  uint64_t version() const { return version_; }

  // Page tables of all layers as flat [n_layers, n_kv_heads, max_pages()] arrays, host memory.
  const std::vector<int32_t>& k_tables() const { return k_table_; }
  const std::vector<int32_t>& v_tables() const { return v_table_; }

  KvStats stats() const;

 private:
  int32_t& k_page(int layer, int head, int page) {
    return k_table_[(size_t(layer) * n_kv_heads_ + head) * size_t(table_pages_) + size_t(page)];
  }
  int32_t& v_page(int layer, int head, int page) {
    return v_table_[(size_t(layer) * n_kv_heads_ + head) * size_t(table_pages_) + size_t(page)];
  }
  size_t slot(int row, int page) const { return size_t(row) * size_t(table_pages_) + size_t(page); }
  // Lengthens every table row to at least `pages` entries (new entries -1).
  void grow_tables(int pages);

  enum class KeyState : uint8_t { Kept, Deferred, Dropped };
  KeyState key_state(int layer, int head) const { return k_state_[size_t(layer) * n_kv_heads_ + head]; }
  void release_keys(int layer, int head);

  KvPool& pool_;
  int n_layers_, n_kv_heads_, max_tokens_, max_pages_;
  int table_pages_ = 0;
  int n_tokens_ = 0;
  int reserved_pages_ = 0;  // pages per (layer, head) reserved so far
  uint64_t version_ = 0;
  std::vector<int32_t> k_table_, v_table_;
  std::vector<KeyState> k_state_;
};

}  // namespace chai
