#include "json.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace chai {
namespace {

// Nesting deeper than this is no model file: refuse it rather than recurse without bound.
constexpr int kMaxDepth = 64;

class Parser {
 public:
  Parser(const char* text, size_t length, const std::string& what) : p_(text), begin_(text), end_(text + length), what_(what) {}

  JsonValue document() {
    JsonValue v = value(0);
    skip_space();
    if (p_ != end_) bad("unexpected text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void bad(const std::string& why) const {
    fail(ErrorCode::ModelFormat, what_ + ": invalid JSON at byte " + std::to_string(p_ - begin_) + ": " + why);
  }

  void skip_space() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }

  bool literal(const char* word) {
    const size_t n = std::strlen(word);
    if (size_t(end_ - p_) < n || std::memcmp(p_, word, n) != 0) return false;
    p_ += n;
    return true;
  }

  JsonValue value(int depth) {
    if (depth > kMaxDepth) bad("nested more than " + std::to_string(kMaxDepth) + " levels deep");
    skip_space();
    if (p_ == end_) bad("unexpected end of text");
    JsonValue v;
    switch (*p_) {
      case '{': object(v, depth); break;
      case '[': array(v, depth); break;
      case '"': v.kind = JsonValue::Kind::String; v.s = string(); break;
      case 't': case 'f':
        v.kind = JsonValue::Kind::Bool;
        if (literal("true")) v.b = true;
        else if (!literal("false")) bad("unknown literal");
        break;
      case 'n':
        if (!literal("null")) bad("unknown literal");
        break;
      default: number(v); break;
    }
    return v;
  }

  void object(JsonValue& v, int depth) {
    v.kind = JsonValue::Kind::Object;
    ++p_;
    skip_space();
    if (p_ != end_ && *p_ == '}') {
      ++p_;
      return;
    }
    for (;;) {
      skip_space();
      if (p_ == end_ || *p_ != '"') bad("expected a member name");
      std::string key = string();
      skip_space();
      if (p_ == end_ || *p_ != ':') bad("expected ':'");
      ++p_;
      v.members[key] = value(depth + 1);
      skip_space();
      if (p_ != end_ && *p_ == ',') { ++p_; continue; }
      if (p_ != end_ && *p_ == '}') { ++p_; return; }
      bad("expected ',' or '}'");
    }
  }

  void array(JsonValue& v, int depth) {
    v.kind = JsonValue::Kind::Array;
    ++p_;
    skip_space();
    if (p_ != end_ && *p_ == ']') {
      ++p_;
      return;
    }
    for (;;) {
      v.items.push_back(value(depth + 1));
      skip_space();
      if (p_ != end_ && *p_ == ',') { ++p_; continue; }
      if (p_ != end_ && *p_ == ']') { ++p_; return; }
      bad("expected ',' or ']'");
    }
  }

  unsigned hex4() {
    if (end_ - p_ < 4) bad("truncated \\u escape");
    unsigned code = 0;
    for (int i = 0; i < 4; ++i, ++p_) {
      const char c = *p_;
      code <<= 4;
      if (c >= '0' && c <= '9') code |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') code |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') code |= unsigned(c - 'A' + 10);
      else bad("bad hex digit in \\u escape");
    }
    return code;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    ++p_;  // the opening quote
    std::string out;
    for (;;) {
      if (p_ == end_) bad("unterminated string");
      const char c = *p_++;
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) bad("control character inside a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (p_ == end_) bad("unterminated escape");
      switch (*p_++) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          // A UTF-16 surrogate pair encodes one code point above U+FFFF.
          if (cp >= 0xD800 && cp < 0xDC00 && end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
            p_ += 2;
            const unsigned low = hex4();
            if (low < 0xDC00 || low >= 0xE000) bad("unpaired UTF-16 surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: bad("unknown escape");
      }
    }
  }

  void number(JsonValue& v) {
    const char* start = p_;
    if (p_ != end_ && *p_ == '-') ++p_;
    bool digits = false, integral = true;
    while (p_ != end_ && ((*p_ >= '0' && *p_ <= '9') || *p_ == '.' || *p_ == 'e' || *p_ == 'E' || *p_ == '+' || *p_ == '-')) {
      if (*p_ >= '0' && *p_ <= '9') digits = true;
      else integral = false;
      ++p_;
    }
    if (!digits) bad("expected a value");
    // strtod needs a terminated string; numbers are short.
    const std::string text(start, size_t(p_ - start));
    char* stop = nullptr;
    v.number = std::strtod(text.c_str(), &stop);
    if (stop != text.c_str() + text.size()) bad("malformed number '" + text + "'");
    v.kind = JsonValue::Kind::Number;
    v.integral = integral;
  }

  const char* p_;
  const char* begin_;
  const char* end_;
  const std::string& what_;
};

}  // namespace

const JsonValue* JsonValue::find(const std::string& key) const {
  if (kind != Kind::Object) return nullptr;
  auto it = members.find(key);
  return it == members.end() ? nullptr : &it->second;
}

JsonValue parse_json(const char* text, size_t length, const std::string& what) {
  return Parser(text, length, what).document();
}

}  // namespace chai
