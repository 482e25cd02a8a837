// A small JSON reader for the files of Hugging Face folders (config.json, the safetensors
// headers, model.safetensors.index.json). It parses RFC 8259 JSON into a tree; malformed text is
// an E_MODEL_FORMAT error naming the file and the byte where parsing stopped.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace chai {

struct JsonValue {
  enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
  bool b = false;
  double number = 0;
  bool integral = false;          // the number was written without fraction or exponent
  std::string s;
  std::vector<JsonValue> items;   // Kind::Array
  std::map<std::string, JsonValue> members;  // Kind::Object (a repeated key keeps its last value)

  bool is_null() const { return kind == Kind::Null; }
  bool is_object() const { return kind == Kind::Object; }
  // The member `key` of an object, or nullptr when absent (or when this is not an object).
  const JsonValue* find(const std::string& key) const;
};

// `what` names the source in error messages (a file path).
JsonValue parse_json(const char* text, size_t length, const std::string& what);

}  // namespace chai
