// The JSON reader of Hugging Face folders: what valid files hold, and typed errors for the rest.
#include <cstring>
#include <string>

#include "core/error.h"
#include "model/json.h"
#include "testing.h"

using namespace chai;

namespace {

JsonValue parse(const std::string& text) { return parse_json(text.data(), text.size(), "test.json"); }

// Whether parsing `text` throws a ModelFormat error (never anything else).
bool rejects(const std::string& text) {
  try {
    parse(text);
  } catch (const Error& e) {
    return e.code() == ErrorCode::ModelFormat && std::strstr(e.what(), "test.json") != nullptr;
  }
  return false;
}

}  // namespace

int main() {
  testing::Suite suite("json");

  const JsonValue config = parse(R"( {"hidden_size": 64, "rms_norm_eps": 1e-05, "rope_scaling": null,
      "tie_word_embeddings": false, "architectures": ["LlamaForCausalLM"], "nested": {"a": [1, -2.5, true]}} )");
  suite.check(config.is_object() && config.members.size() == 6, "an object with its members");
  const JsonValue* hidden = config.find("hidden_size");
  suite.check(hidden && hidden->kind == JsonValue::Kind::Number && hidden->number == 64 && hidden->integral, "an integer");
  const JsonValue* eps = config.find("rms_norm_eps");
  suite.check(eps && eps->number == 1e-05 && !eps->integral, "a number with an exponent is not integral");
  suite.check(config.find("rope_scaling") && config.find("rope_scaling")->is_null(), "null");
  suite.check(config.find("tie_word_embeddings")->kind == JsonValue::Kind::Bool && !config.find("tie_word_embeddings")->b, "false");
  suite.check(config.find("architectures")->items.at(0).s == "LlamaForCausalLM", "an array of strings");
  const JsonValue& nested = config.find("nested")->find("a")->items.at(1);
  suite.check(nested.number == -2.5, "a negative fraction inside nested containers");
  suite.check(config.find("absent") == nullptr && nested.find("x") == nullptr, "absent members and non-objects find nothing");

  suite.check(parse(R"("a\"b\\c\/d\n\t")").s == "a\"b\\c/d\n\t", "simple escapes");
  suite.check(parse(R"("\u00e9\u2581")").s == "\xc3\xa9\xe2\x96\x81", "\\u escapes become UTF-8 (é, ▁)");
  suite.check(parse(R"("\ud83d\ude00")").s == "\xf0\x9f\x98\x80", "a surrogate pair becomes one 4-byte character");
  suite.check(parse("\"\xe4\xbd\xa0\"").s == "\xe4\xbd\xa0", "raw UTF-8 passes through");
  suite.check(parse("[]").items.empty() && parse("{}").members.empty(), "empty containers");

  suite.check(rejects(""), "empty text");
  suite.check(rejects("{\"a\": 1"), "an unterminated object");
  suite.check(rejects("[1, 2,]"), "a trailing comma");
  suite.check(rejects("{\"a\" 1}"), "a missing colon");
  suite.check(rejects("\"abc"), "an unterminated string");
  suite.check(rejects("\"a\\x\""), "an unknown escape");
  suite.check(rejects("\"\\u12\""), "a short \\u escape");
  suite.check(rejects("\"\\ud83d\\u0041\""), "an unpaired surrogate");
  suite.check(rejects("\"a\nb\""), "a raw newline inside a string");
  suite.check(rejects("tru"), "a cut literal");
  suite.check(rejects("1 2"), "text after the value");
  suite.check(rejects("1.2.3") && rejects("-") && rejects("1e"), "malformed numbers");
  suite.check(rejects(std::string(100, '[') + std::string(100, ']')), "nesting beyond the limit");
  suite.check(!rejects(std::string(60, '[') + std::string(60, ']')), "nesting within the limit");
  return suite.finish();
}
