// Prefix caching: the KV pages of prompts already computed, kept so that a later sequence whose
// tokens start the same reads them instead of computing them again (vLLM's automatic prefix
// caching, over this engine's head-granular pages).
//
// The cache is a tree per scope: each node is one full page of tokens (page_tokens ids) and holds
// that page index's column of KV pages (every layer and KV head) as one more holder in the pool,
// so the pages stay while the sequences that computed them end. A node's key is its parent's key
// and its own tokens, compared exactly (no hash can collide). A scope names what else the keys'
// contents depend on: the cluster plan (its counts, t0, clustering options and seed) or full
// attention. The model is not part of the scope: a cache belongs to one loaded model and its pool.
//
// Sharing is read-only: a sequence that adopts cached columns writes into none of them
// (SequenceKv::unshare copies a shared page before a write, as when a prompt diverges inside a
// cached page). Under the pool's cap, pages that only the cache holds are freed when a new
// request needs room, leaves of the tree first, least recently used first; a node whose pages a
// sequence holds is never evicted.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "chai/clustering.h"
#include "kv_cache.h"

namespace chai {

// The head clusters of every layer (nullopt: not clustered), as a CHAI sequence chose them.
using LayerAssignments = std::vector<std::optional<Clustering>>;

struct PrefixMatch {
  int tokens = 0;                   // cached tokens: whole pages, then possibly part of one more
  std::vector<PageColumn> columns;  // the pages of tokens [0, tokens), one column per page index
  // The clusters chosen from the prefix's first t0 tokens (CHAI scopes only).
  std::shared_ptr<const LayerAssignments> assignments;
};

struct PrefixCacheStats {
  uint64_t lookups = 0;         // match() calls
  uint64_t hits = 0;            // ... that found at least one token
  uint64_t lookup_tokens = 0;   // prompt tokens looked up
  uint64_t hit_tokens = 0;      // ... found cached
  uint64_t evicted_pages = 0;   // pages freed by eviction
  size_t nodes = 0;             // cached pages of tokens (columns)
  size_t pages = 0;             // KV pages the cache holds (shared with sequences or not)
};

class PrefixCache {
 public:
  // Becomes `pool`'s reclaimer; the pool must outlive the cache.
  explicit PrefixCache(KvPool& pool);
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // The longest cached prefix of `tokens` in `scope`, at most max_tokens long; none (tokens 0)
  // when it is shorter than min_tokens. Marks the nodes it uses as recently used. The pages of
  // the match come with one more holder each (taken under the cache's lock, so no eviction can
  // free them first): the caller passes them to SequenceKv::adopt or releases them.
  PrefixMatch match(const std::string& scope, const std::vector<int32_t>& tokens, int min_tokens, int max_tokens);

  // Offers the first `full_pages` pages of a sequence (tokens [0, full_pages * page_tokens) of
  // `tokens`, pages from `kv`) to the cache: pages not cached yet are kept, one more holder each.
  // Stops at a page whose tokens are cached with other pages (computed by another sequence), so
  // every cached node's ancestors are held by whoever holds the node. `assignments` go with
  // the nodes at or past t0 tokens (CHAI scopes; null otherwise).
  void insert(const std::string& scope, const std::vector<int32_t>& tokens, const SequenceKv& kv, int full_pages, int t0,
              const std::shared_ptr<const LayerAssignments>& assignments);

  // Frees at least `pages` pages that only the cache holds, if it has them: least recently used
  // leaves first.
  void evict(size_t pages);
  // Drops every node; pages that sequences still hold stay theirs.
  void clear();
  PrefixCacheStats stats() const;
  bool serves(const KvPool& pool) const { return &pool_ == &pool; }

 private:
  struct Node {
    std::vector<int32_t> tokens;  // this page's token ids (page_tokens of them; empty at a root)
    PageColumn column;
    std::shared_ptr<const LayerAssignments> assignments;
    uint64_t last_use = 0;
    Node* parent = nullptr;
    std::map<std::vector<int32_t>, std::unique_ptr<Node>> children;
  };
  size_t column_pages(const Node& node) const;
  bool in_use(const Node& node) const;
  void drop(Node& node);  // releases a leaf's pages and removes it from its parent
  // The leaves under `node` that no sequence holds.
  void collect_evictable(Node& node, std::vector<Node*>& out) const;

  KvPool& pool_;
  const int page_tokens_;
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Node>> roots_;
  uint64_t clock_ = 0;
  PrefixCacheStats stats_;
};

}  // namespace chai
