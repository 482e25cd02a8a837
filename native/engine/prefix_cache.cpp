#include "prefix_cache.h"

#include <algorithm>
#include <queue>

#include "core/error.h"

namespace chai {

PrefixCache::PrefixCache(KvPool& pool) : pool_(pool), page_tokens_(pool.page_tokens()) {
  pool_.set_reclaimer([this](size_t pages) { evict(pages); });
}

PrefixCache::~PrefixCache() {
  pool_.set_reclaimer({});
  clear();
}

size_t PrefixCache::column_pages(const Node& node) const {
  size_t n = 0;
  for (const std::vector<int32_t>* ids : {&node.column.k, &node.column.v})
    n += size_t(std::count_if(ids->begin(), ids->end(), [](int32_t id) { return id >= 0; }));
  return n;
}

bool PrefixCache::in_use(const Node& node) const {
  // A column's pages are taken and given back together (adopt, unshare, the sequence's end), so
  // its first V page (every head has V pages) tells whether a sequence holds any of them.
  return pool_.holders(node.column.v[0]) > 1;
}

PrefixMatch PrefixCache::match(const std::string& scope, const std::vector<int32_t>& tokens, int min_tokens, int max_tokens) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.lookups;
  stats_.lookup_tokens += tokens.size();
  PrefixMatch found;
  const auto root = roots_.find(scope);
  if (root == roots_.end()) return found;
  max_tokens = std::min(max_tokens, int(tokens.size()));
  std::vector<Node*> path;
  Node* node = root->second.get();
  // Whole pages first.
  for (int start = 0; start + page_tokens_ <= max_tokens; start += page_tokens_) {
    const auto child = node->children.find(std::vector<int32_t>(tokens.begin() + start, tokens.begin() + start + page_tokens_));
    if (child == node->children.end()) break;
    node = child->second.get();
    path.push_back(node);
  }
  int matched = int(path.size()) * page_tokens_;
  // Then the cached page that shares the most leading tokens with the rest, if any: the sequence
  // takes it whole, holds those tokens, and copies it before writing the first one that differs.
  Node* partial = nullptr;
  int partial_tokens = 0;
  for (const auto& [key, child] : node->children) {
    int common = 0;
    while (common < page_tokens_ && matched + common < max_tokens && key[size_t(common)] == tokens[size_t(matched + common)]) ++common;
    if (common > partial_tokens) {
      partial = child.get();
      partial_tokens = common;
    }
  }
  if (partial) {
    path.push_back(partial);
    matched += partial_tokens;
  }
  if (matched == 0 || matched < min_tokens) return found;
  found.tokens = matched;
  ++clock_;
  for (Node* n : path) {
    pool_.retain(n->column.k);
    pool_.retain(n->column.v);
    found.columns.push_back(n->column);
    n->last_use = clock_;
    if (n->assignments) found.assignments = n->assignments;
  }
  ++stats_.hits;
  stats_.hit_tokens += uint64_t(matched);
  return found;
}

void PrefixCache::insert(const std::string& scope, const std::vector<int32_t>& tokens, const SequenceKv& kv, int full_pages, int t0,
                         const std::shared_ptr<const LayerAssignments>& assignments) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::unique_ptr<Node>& root = roots_[scope];
  if (!root) root = std::make_unique<Node>();
  Node* node = root.get();
  ++clock_;
  for (int p = 0; p < full_pages; ++p) {
    std::vector<int32_t> key(tokens.begin() + p * page_tokens_, tokens.begin() + (p + 1) * page_tokens_);
    PageColumn column = kv.column(p);
    auto existing = node->children.find(key);
    Node* child = existing == node->children.end() ? nullptr : existing->second.get();
    if (child && !(child->column == column)) return;  // cached from another sequence's pages: not under them
    if (!child) {
      // Built whole before it joins the tree, and pages retained last: a bad_alloc leaves no trace.
      auto fresh = std::make_unique<Node>();
      fresh->tokens = key;
      fresh->column = std::move(column);
      fresh->parent = node;
      if (assignments && (p + 1) * page_tokens_ >= t0) fresh->assignments = assignments;
      child = fresh.get();
      node->children.emplace(std::move(key), std::move(fresh));
      pool_.retain(child->column.k);
      pool_.retain(child->column.v);
      ++stats_.nodes;
      stats_.pages += column_pages(*child);
    }
    child->last_use = clock_;
    node = child;
  }
}

void PrefixCache::collect_evictable(Node& node, std::vector<Node*>& out) const {
  for (auto& [key, child] : node.children) {
    if (!child->children.empty()) collect_evictable(*child, out);
    else if (!in_use(*child)) out.push_back(child.get());
  }
}

void PrefixCache::drop(Node& node) {
  const size_t pages = column_pages(node);
  pool_.release(node.column.k);
  pool_.release(node.column.v);
  stats_.pages -= pages;
  --stats_.nodes;
  node.parent->children.erase(node.tokens);  // destroys `node`
}

void PrefixCache::evict(size_t pages) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Least recently used leaf first; a parent whose last child goes becomes a candidate in turn
  // (never used later than its children: a use marks the whole path).
  auto later = [](const Node* a, const Node* b) { return a->last_use > b->last_use; };
  std::vector<Node*> leaves;
  for (auto& [scope, root] : roots_) collect_evictable(*root, leaves);
  std::priority_queue<Node*, std::vector<Node*>, decltype(later)> queue(later, std::move(leaves));
  size_t freed = 0;
  while (freed < pages && !queue.empty()) {
    Node* victim = queue.top();
    queue.pop();
    Node* parent = victim->parent;
    const size_t n = column_pages(*victim);
    drop(*victim);
    freed += n;
    stats_.evicted_pages += n;
    if (parent->parent && parent->children.empty() && !in_use(*parent)) queue.push(parent);
  }
}

void PrefixCache::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  // Leaves first, so that every node dropped has no children left.
  for (auto& [scope, root] : roots_) {
    std::vector<Node*> order{root.get()};
    for (size_t i = 0; i < order.size(); ++i)
      for (auto& [key, child] : order[i]->children) order.push_back(child.get());
    for (size_t i = order.size(); i-- > 1;) drop(*order[i]);
  }
  roots_.clear();
}

PrefixCacheStats PrefixCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

}  // namespace chai
