// The lexer and parser: Jinja2's (lexer.py, parser.py) rules for data, tags, whitespace
// control with trim_blocks and lstrip_blocks, and expressions, narrowed to what chat templates
// use.
#include <cstring>

#include "platform/engine/jinja/ast.h"
#include "platform/engine/jinja/builtins.h"
#include "platform/engine/jinja/template.h"
#include "platform/engine/unicode.h"

namespace mh::engine::jinja {
namespace {

constexpr size_t kMaxTemplateBytes = size_t{1} << 20;
constexpr int kMaxNesting = 200;

struct Token {
  enum class Type { kText, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOp, kEof };
  Type type;
  std::string value;
  int line;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Python's str.isspace over a UTF-8 string (str.rstrip, the regex \s).
size_t rstrip_whitespace(std::string_view s) {
  size_t e = s.size();
  while (e > 0) {
    size_t b = e - 1;
    while (b > 0 && (static_cast<uint8_t>(s[b]) & 0xc0) == 0x80) --b;
    const unicode::Char c = unicode::decode(s, b);
    const bool ws = c.cp >= 0 && (unicode::is_whitespace(c.cp) || (c.cp >= 0x1c && c.cp <= 0x1f));
    if (!ws || c.len != e - b) break;
    e = b;
  }
  return e;
}
size_t lstrip_whitespace(std::string_view s, size_t from) {
  size_t i = from;
  while (i < s.size()) {
    const unicode::Char c = unicode::decode(s, i);
    const bool ws = c.cp >= 0 && (unicode::is_whitespace(c.cp) || (c.cp >= 0x1c && c.cp <= 0x1f));
    if (!ws) break;
    i += c.len;
  }
  return i;
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  Result<std::vector<Token>> run() {
    std::vector<Token> out;
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      // The next tag start: "{{", "{%" or "{#".
      size_t tag = pos;
      while (true) {
        tag = src_.find('{', tag);
        if (tag == std::string::npos || tag + 1 >= src_.size()) {
          tag = std::string::npos;
          break;
        }
        const char k = src_[tag + 1];
        if (k == '{' || k == '%' || k == '#') break;
        ++tag;
      }
      if (tag == std::string::npos) {
        emit_text(out, src_.substr(pos));
        break;
      }
      const char kind = src_[tag + 1];
      const char sign = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      std::string text = src_.substr(pos, tag - pos);
      if (sign == '-') {
        text.resize(rstrip_whitespace(text));
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: a block or comment tag alone on its line takes the line's indent.
        const size_t line_begin = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((line_begin > 0 || line_starting) && line_begin < text.size() &&
            rstrip_whitespace(std::string_view(text).substr(line_begin)) == 0) {
          text.resize(line_begin);
        }
      }
      line_ += count_lines(src_.substr(pos, tag - pos));
      emit_text(out, text);
      pos = tag + 2 + (sign == '-' || sign == '+' ? 1 : 0);
      if (kind == '#') {
        MH_ASSIGN_OR_RETURN(pos, skip_comment(pos, line_starting));
        continue;
      }
      out.push_back({kind == '{' ? Token::Type::kVarBegin : Token::Type::kBlockBegin, "", line_});
      MH_ASSIGN_OR_RETURN(pos, lex_tag(pos, kind == '{' ? "}}" : "%}", out, line_starting));
    }
    out.push_back({Token::Type::kEof, "", line_});
    return out;
  }

 private:
  static int count_lines(std::string_view s) {
    return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
  }

  void emit_text(std::vector<Token>& out, std::string text) {
    if (!text.empty()) out.push_back({Token::Type::kText, std::move(text), line_});
  }

  Status error(std::string what) const {
    return invalid_argument("chat template line " + std::to_string(line_) + ": " + what);
  }

  // After a closing "-X}" all whitespace goes; after "%}" or "#}" one newline (trim_blocks).
  size_t after_close(size_t at, bool minus, bool plus, bool trim, bool& line_starting) {
    if (minus) {
      const size_t end = lstrip_whitespace(src_, at);
      line_ += count_lines(std::string_view(src_).substr(at, end - at));
      line_starting = end > at && src_[end - 1] == '\n';
      return end;
    }
    if (trim && !plus && at < src_.size() && src_[at] == '\n') {
      ++line_;
      line_starting = true;
      return at + 1;
    }
    line_starting = false;
    return at;
  }

  Result<size_t> skip_comment(size_t pos, bool& line_starting) {
    const size_t end = src_.find("#}", pos);
    if (end == std::string::npos) return error("a comment is not closed");
    line_ += count_lines(std::string_view(src_).substr(pos, end - pos));
    const bool minus = end > pos && src_[end - 1] == '-';
    const bool plus = end > pos && src_[end - 1] == '+';
    return after_close(end + 2, minus, plus, true, line_starting);
  }

  Result<size_t> lex_tag(size_t pos, std::string_view close, std::vector<Token>& out,
                         bool& line_starting) {
    int depth = 0;  // brackets open: a "}}" inside them is two operators
    while (true) {
      while (pos < src_.size() && is_space(src_[pos])) {
        if (src_[pos] == '\n') ++line_;
        ++pos;
      }
      if (pos >= src_.size()) return error("a tag is not closed");
      const std::string_view rest = std::string_view(src_).substr(pos);
      if (depth == 0) {
        for (const char* sign : {"-", "+", ""}) {
          if (rest.starts_with(std::string(sign) + std::string(close))) {
            out.push_back({close == "}}" ? Token::Type::kVarEnd : Token::Type::kBlockEnd, "", line_});
            const size_t end = pos + std::strlen(sign) + close.size();
            return after_close(end, sign[0] == '-', sign[0] == '+', close == "%}", line_starting);
          }
        }
      }
      const char c = src_[pos];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos;
        while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        out.push_back({Token::Type::kName, src_.substr(pos, e - pos), line_});
        pos = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t e = pos;
        bool is_float = false;
        while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
          is_float = true;
          ++e;
          while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
        }
        if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
          size_t f = e + 1;
          if (f < src_.size() && (src_[f] == '+' || src_[f] == '-')) ++f;
          if (f < src_.size() && std::isdigit(static_cast<unsigned char>(src_[f]))) {
            is_float = true;
            e = f;
            while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
          }
        }
        std::string digits;
        for (size_t i = pos; i < e; ++i) {
          if (src_[i] != '_') digits += src_[i];
        }
        out.push_back({is_float ? Token::Type::kFloat : Token::Type::kInt, digits, line_});
        pos = e;
      } else if (c == '\'' || c == '"') {
        MH_ASSIGN_OR_RETURN(pos, lex_string(pos, out));
      } else {
        static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%",
                                     "~", "<", ">", "(", ")", "[", "]", "{", "}", ",", ".", ":",
                                     "|", "=", "!"};
        const char* found = nullptr;
        for (const char* op : kOps) {
          if (rest.starts_with(op)) {
            found = op;
            break;
          }
        }
        if (found == nullptr) return error(std::string("unexpected character '") + c + "'");
        const std::string op = found;
        if (op == "(" || op == "[" || op == "{") ++depth;
        if ((op == ")" || op == "]" || op == "}") && --depth < 0) return error("unexpected '" + op + "'");
        out.push_back({Token::Type::kOp, op, line_});
        pos += op.size();
      }
    }
  }

  // A string literal with Python's escapes (Jinja2 decodes them as "unicode-escape").
  Result<size_t> lex_string(size_t pos, std::vector<Token>& out) {
    const char quote = src_[pos];
    std::string value;
    size_t i = pos + 1;
    while (true) {
      if (i >= src_.size()) return error("a string is not closed");
      const char c = src_[i];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\' || i + 1 >= src_.size()) {
        value += c;
        ++i;
        continue;
      }
      const char e = src_[i + 1];
      i += 2;
      switch (e) {
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case 'a': value += '\a'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'v': value += '\v'; break;
        case '0': value += '\0'; break;
        case '\n': ++line_; break;  // a line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (i + n > src_.size()) return error("a string has a truncated \\" + std::string(1, e) + " escape");
          uint32_t cp = 0;
          for (size_t k = 0; k < n; ++k) {
            const char h = src_[i + k];
            if (!std::isxdigit(static_cast<unsigned char>(h))) return error("a string has a bad \\" + std::string(1, e) + " escape");
            cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
          }
          if (cp > 0x10ffff) return error("a string escapes a code point past U+10FFFF");
          unicode::append(value, cp);
          i += n;
          break;
        }
        default:
          value += '\\';
          value += e;
      }
    }
    out.push_back({Token::Type::kString, std::move(value), line_});
    return i + 1;
  }

  std::string src_;
  int line_ = 1;
};

// --- the parser ----------------------------------------------------------------------------

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Result<NodePtr> parse_template(bool& has_generation) {
    auto root = std::make_shared<Node>();
    root->kind = Node::Kind::kBody;
    MH_ASSIGN_OR_RETURN(std::string end, parse_body(root->body, {}));
    if (!end.empty()) return error("unexpected '" + end + "'");
    has_generation = has_generation_;
    return NodePtr(root);
  }

 private:
  const Token& peek(size_t k = 0) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  Token next() { return t_[std::min(i_++, t_.size() - 1)]; }
  bool at_op(std::string_view op) const { return peek().type == Token::Type::kOp && peek().value == op; }
  bool at_name(std::string_view n) const { return peek().type == Token::Type::kName && peek().value == n; }
  Status error(std::string what) const {
    return invalid_argument("chat template line " + std::to_string(peek().line) + ": " + what);
  }
  Status expect_op(std::string_view op) {
    if (!at_op(op)) return error("expected '" + std::string(op) + "'");
    ++i_;
    return {};
  }
  Status expect_block_end() {
    if (peek().type != Token::Type::kBlockEnd) return error("expected the end of the tag");
    ++i_;
    return {};
  }
  Result<std::string> expect_name() {
    if (peek().type != Token::Type::kName) return error("expected a name");
    return next().value;
  }

  // Parses nodes until a block tag whose keyword is in `ends`; returns that keyword (its tag
  // consumed up to the keyword) or "" at the end of the template.
  Result<std::string> parse_body(Body& body, std::initializer_list<std::string_view> ends) {
    if (++nesting_ > kMaxNesting) return error("blocks nest too deeply");
    while (true) {
      const Token& tok = peek();
      if (tok.type == Token::Type::kEof) {
        --nesting_;
        return std::string();
      }
      if (tok.type == Token::Type::kText) {
        auto n = std::make_shared<Node>();
        n->kind = Node::Kind::kText;
        n->text = next().value;
        body.push_back(n);
        continue;
      }
      if (tok.type == Token::Type::kVarBegin) {
        ++i_;
        auto n = std::make_shared<Node>();
        n->kind = Node::Kind::kOutput;
        n->line = tok.line;
        MH_ASSIGN_OR_RETURN(n->expr, parse_expression());
        if (peek().type != Token::Type::kVarEnd) return error("expected '}}'");
        ++i_;
        body.push_back(n);
        continue;
      }
      // A block tag.
      ++i_;
      MH_ASSIGN_OR_RETURN(std::string keyword, expect_name());
      for (std::string_view e : ends) {
        if (keyword == e) {
          --nesting_;
          return keyword;
        }
      }
      MH_ASSIGN_OR_RETURN(NodePtr n, parse_statement(keyword, tok.line));
      body.push_back(n);
    }
  }

  Result<NodePtr> parse_statement(const std::string& keyword, int line) {
    auto n = std::make_shared<Node>();
    n->line = line;
    if (keyword == "if") {
      n->kind = Node::Kind::kIf;
      MH_ASSIGN_OR_RETURN(ExprPtr cond, parse_expression());
      MH_TRY(expect_block_end());
      while (true) {
        Body body;
        MH_ASSIGN_OR_RETURN(std::string end, parse_body(body, {"elif", "else", "endif"}));
        n->branches.emplace_back(cond, std::move(body));
        if (end == "elif") {
          MH_ASSIGN_OR_RETURN(cond, parse_expression());
          MH_TRY(expect_block_end());
          continue;
        }
        if (end == "else") {
          MH_TRY(expect_block_end());
          MH_ASSIGN_OR_RETURN(end, parse_body(n->else_body, {"endif"}));
        }
        if (end != "endif") return error("an 'if' is not closed by 'endif'");
        MH_TRY(expect_block_end());
        return NodePtr(n);
      }
    }
    if (keyword == "for") {
      n->kind = Node::Kind::kFor;
      do {
        MH_ASSIGN_OR_RETURN(std::string target, expect_name());
        n->targets.push_back(target);
      } while (at_op(",") && (++i_, true));
      if (!at_name("in")) return error("expected 'in' in a for loop");
      ++i_;
      MH_ASSIGN_OR_RETURN(n->expr, parse_or(/*allow_cond=*/false));
      if (at_name("if")) {
        ++i_;
        MH_ASSIGN_OR_RETURN(n->filter, parse_expression());
      }
      if (at_name("recursive")) return error("recursive loops are not implemented");
      MH_TRY(expect_block_end());
      ++loops_;
      MH_ASSIGN_OR_RETURN(std::string end, parse_body(n->body, {"else", "endfor"}));
      --loops_;
      if (end == "else") {
        MH_TRY(expect_block_end());
        MH_ASSIGN_OR_RETURN(end, parse_body(n->else_body, {"endfor"}));
      }
      if (end != "endfor") return error("a 'for' is not closed by 'endfor'");
      MH_TRY(expect_block_end());
      return NodePtr(n);
    }
    if (keyword == "set") {
      MH_ASSIGN_OR_RETURN(std::string target, expect_name());
      n->targets.push_back(target);
      if (at_op(".")) {
        ++i_;
        MH_ASSIGN_OR_RETURN(n->attr, expect_name());
      } else {
        while (at_op(",")) {
          ++i_;
          MH_ASSIGN_OR_RETURN(std::string more, expect_name());
          n->targets.push_back(more);
        }
      }
      if (peek().type == Token::Type::kBlockEnd && n->targets.size() == 1 && n->attr.empty()) {
        ++i_;
        n->kind = Node::Kind::kSetBlock;
        MH_ASSIGN_OR_RETURN(std::string end, parse_body(n->body, {"endset"}));
        if (end != "endset") return error("a 'set' block is not closed by 'endset'");
        MH_TRY(expect_block_end());
        return NodePtr(n);
      }
      n->kind = Node::Kind::kSet;
      MH_TRY(expect_op("="));
      MH_ASSIGN_OR_RETURN(n->expr, parse_tuple_or_expression());
      MH_TRY(expect_block_end());
      return NodePtr(n);
    }
    if (keyword == "macro") {
      n->kind = Node::Kind::kMacro;
      MH_ASSIGN_OR_RETURN(n->name, expect_name());
      MH_TRY(expect_op("("));
      while (!at_op(")")) {
        MH_ASSIGN_OR_RETURN(std::string param, expect_name());
        ExprPtr def;
        if (at_op("=")) {
          ++i_;
          MH_ASSIGN_OR_RETURN(def, parse_expression());
        }
        n->params.emplace_back(param, def);
        if (!at_op(",")) break;
        ++i_;
      }
      MH_TRY(expect_op(")"));
      MH_TRY(expect_block_end());
      MH_ASSIGN_OR_RETURN(std::string end, parse_body(n->body, {"endmacro"}));
      if (end != "endmacro") return error("a 'macro' is not closed by 'endmacro'");
      MH_TRY(expect_block_end());
      return NodePtr(n);
    }
    if (keyword == "break" || keyword == "continue") {
      if (loops_ == 0) return error("'" + keyword + "' outside a loop");
      n->kind = keyword == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
      MH_TRY(expect_block_end());
      return NodePtr(n);
    }
    if (keyword == "generation") {
      n->kind = Node::Kind::kGeneration;
      has_generation_ = true;
      MH_TRY(expect_block_end());
      MH_ASSIGN_OR_RETURN(std::string end, parse_body(n->body, {"endgeneration"}));
      if (end != "endgeneration") return error("a 'generation' is not closed by 'endgeneration'");
      MH_TRY(expect_block_end());
      return NodePtr(n);
    }
    if (keyword.starts_with("end") || keyword == "elif" || keyword == "else") {
      return error("unexpected '" + keyword + "'");
    }
    return error("the '" + keyword + "' tag is not implemented by this engine's chat templates");
  }

  // --- expressions, in Jinja2's precedence ---

  static std::shared_ptr<Expr> make(Expr::Kind kind, int line) {
    auto e = std::make_shared<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  Result<ExprPtr> parse_tuple_or_expression() {
    const int line = peek().line;
    MH_ASSIGN_OR_RETURN(ExprPtr first, parse_expression());
    if (!at_op(",")) return first;
    auto t = make(Expr::Kind::kTuple, line);
    t->args.push_back(first);
    while (at_op(",")) {
      ++i_;
      if (peek().type == Token::Type::kBlockEnd) break;
      MH_ASSIGN_OR_RETURN(ExprPtr more, parse_expression());
      t->args.push_back(more);
    }
    return ExprPtr(t);
  }

  Result<ExprPtr> parse_expression() {
    if (++depth_ > kMaxNesting) return error("an expression nests too deeply");
    auto r = parse_or(true);
    --depth_;
    return r;
  }

  Result<ExprPtr> parse_or(bool allow_cond) {
    const int line = peek().line;
    MH_ASSIGN_OR_RETURN(ExprPtr left, parse_and());
    while (at_name("or")) {
      ++i_;
      MH_ASSIGN_OR_RETURN(ExprPtr right, parse_and());
      auto b = make(Expr::Kind::kBinary, line);
      b->name = "or";
      b->args = {left, right};
      left = b;
    }
    if (allow_cond && at_name("if")) {
      ++i_;
      auto c = make(Expr::Kind::kCond, line);
      MH_ASSIGN_OR_RETURN(ExprPtr cond, parse_or(false));
      ExprPtr otherwise;
      if (at_name("else")) {
        ++i_;
        MH_ASSIGN_OR_RETURN(otherwise, parse_or(true));
      }
      c->args = {left, cond, otherwise};
      return ExprPtr(c);
    }
    return left;
  }

  Result<ExprPtr> parse_and() {
    const int line = peek().line;
    MH_ASSIGN_OR_RETURN(ExprPtr left, parse_not());
    while (at_name("and")) {
      ++i_;
      MH_ASSIGN_OR_RETURN(ExprPtr right, parse_not());
      auto b = make(Expr::Kind::kBinary, line);
      b->name = "and";
      b->args = {left, right};
      left = b;
    }
    return left;
  }

  Result<ExprPtr> parse_not() {
    if (at_name("not")) {
      const int line = next().line;
      MH_ASSIGN_OR_RETURN(ExprPtr operand, parse_not());
      auto u = make(Expr::Kind::kUnary, line);
      u->name = "not";
      u->args = {operand};
      return ExprPtr(u);
    }
    return parse_compare();
  }

  Result<ExprPtr> parse_compare() {
    const int line = peek().line;
    MH_ASSIGN_OR_RETURN(ExprPtr left, parse_math1());
    std::shared_ptr<Expr> chain;
    while (true) {
      std::string op;
      if (peek().type == Token::Type::kOp &&
          (peek().value == "==" || peek().value == "!=" || peek().value == "<" ||
           peek().value == ">" || peek().value == "<=" || peek().value == ">=")) {
        op = next().value;
      } else if (at_name("in")) {
        ++i_;
        op = "in";
      } else if (at_name("not") && peek(1).type == Token::Type::kName && peek(1).value == "in") {
        i_ += 2;
        op = "not in";
      } else {
        break;
      }
      MH_ASSIGN_OR_RETURN(ExprPtr right, parse_math1());
      if (!chain) {
        chain = make(Expr::Kind::kCompare, line);
        chain->args.push_back(left);
      }
      chain->ops.push_back(op);
      chain->args.push_back(right);
    }
    return chain ? ExprPtr(chain) : left;
  }

  Result<ExprPtr> binary_level(std::initializer_list<std::string_view> ops,
                               Result<ExprPtr> (Parser::*next_level)()) {
    const int line = peek().line;
    MH_ASSIGN_OR_RETURN(ExprPtr left, (this->*next_level)());
    while (true) {
      std::string op;
      for (std::string_view o : ops) {
        if (at_op(o)) op = std::string(o);
      }
      if (op.empty()) return left;
      ++i_;
      MH_ASSIGN_OR_RETURN(ExprPtr right, (this->*next_level)());
      auto b = make(Expr::Kind::kBinary, line);
      b->name = op;
      b->args = {left, right};
      left = b;
    }
  }
  Result<ExprPtr> parse_math1() { return binary_level({"+", "-"}, &Parser::parse_concat); }
  Result<ExprPtr> parse_concat() { return binary_level({"~"}, &Parser::parse_math2); }
  Result<ExprPtr> parse_math2() { return binary_level({"*", "/", "//", "%"}, &Parser::parse_pow); }
  Result<ExprPtr> parse_pow() { return binary_level({"**"}, &Parser::parse_unary); }

  Result<ExprPtr> parse_unary() {
    if (at_op("-") || at_op("+")) {
      const Token op = next();
      MH_ASSIGN_OR_RETURN(ExprPtr operand, parse_unary());
      auto u = make(Expr::Kind::kUnary, op.line);
      u->name = op.value;
      u->args = {operand};
      return parse_filters(u);
    }
    MH_ASSIGN_OR_RETURN(ExprPtr primary, parse_primary());
    MH_ASSIGN_OR_RETURN(primary, parse_postfix(primary));
    return parse_filters(primary);
  }

  Result<ExprPtr> parse_primary() {
    const Token tok = next();
    switch (tok.type) {
      case Token::Type::kString: {
        // Adjacent strings join, as in Python.
        std::string s = tok.value;
        while (peek().type == Token::Type::kString) s += next().value;
        auto e = make(Expr::Kind::kLiteral, tok.line);
        e->value = Value(std::move(s));
        return ExprPtr(e);
      }
      case Token::Type::kInt: {
        auto e = make(Expr::Kind::kLiteral, tok.line);
        errno = 0;
        const long long v = std::strtoll(tok.value.c_str(), nullptr, 10);
        if (errno != 0) return error("an integer literal is too large");
        e->value = Value(static_cast<int64_t>(v));
        return ExprPtr(e);
      }
      case Token::Type::kFloat: {
        auto e = make(Expr::Kind::kLiteral, tok.line);
        e->value = Value(std::strtod(tok.value.c_str(), nullptr));
        return ExprPtr(e);
      }
      case Token::Type::kName: {
        auto e = make(Expr::Kind::kLiteral, tok.line);
        if (tok.value == "true" || tok.value == "True") {
          e->value = Value(true);
        } else if (tok.value == "false" || tok.value == "False") {
          e->value = Value(false);
        } else if (tok.value == "none" || tok.value == "None") {
          e->value = Value();
        } else {
          e->kind = Expr::Kind::kName;
          e->name = tok.value;
        }
        return ExprPtr(e);
      }
      case Token::Type::kOp:
        if (tok.value == "(") {
          if (at_op(")")) {
            ++i_;
            return ExprPtr(make(Expr::Kind::kTuple, tok.line));
          }
          MH_ASSIGN_OR_RETURN(ExprPtr inner, parse_expression());
          if (at_op(",")) {
            auto t = make(Expr::Kind::kTuple, tok.line);
            t->args.push_back(inner);
            while (at_op(",")) {
              ++i_;
              if (at_op(")")) break;
              MH_ASSIGN_OR_RETURN(ExprPtr more, parse_expression());
              t->args.push_back(more);
            }
            inner = t;
          }
          MH_TRY(expect_op(")"));
          return inner;
        }
        if (tok.value == "[") {
          auto l = make(Expr::Kind::kList, tok.line);
          while (!at_op("]")) {
            MH_ASSIGN_OR_RETURN(ExprPtr item, parse_expression());
            l->args.push_back(item);
            if (!at_op(",")) break;
            ++i_;
          }
          MH_TRY(expect_op("]"));
          return ExprPtr(l);
        }
        if (tok.value == "{") {
          auto d = make(Expr::Kind::kDict, tok.line);
          while (!at_op("}")) {
            MH_ASSIGN_OR_RETURN(ExprPtr key, parse_expression());
            MH_TRY(expect_op(":"));
            MH_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
            d->args.push_back(key);
            d->args.push_back(value);
            if (!at_op(",")) break;
            ++i_;
          }
          MH_TRY(expect_op("}"));
          return ExprPtr(d);
        }
        break;
      default:
        break;
    }
    --i_;
    return error("unexpected '" + (tok.value.empty() ? std::string("end of tag") : tok.value) + "'");
  }

  Status parse_arguments(Expr& call) {
    MH_TRY(expect_op("("));
    while (!at_op(")")) {
      if (peek().type == Token::Type::kName && peek(1).type == Token::Type::kOp && peek(1).value == "=") {
        const std::string key = next().value;
        ++i_;
        MH_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
        call.kwargs.emplace_back(key, value);
      } else {
        if (at_op("*")) return error("*args in a call are not implemented");
        if (!call.kwargs.empty()) return error("a positional argument follows a keyword one");
        MH_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
        call.args.push_back(value);
      }
      if (!at_op(",")) break;
      ++i_;
    }
    return expect_op(")");
  }

  Result<ExprPtr> parse_postfix(ExprPtr e) {
    while (true) {
      const int line = peek().line;
      if (at_op(".")) {
        ++i_;
        auto a = make(Expr::Kind::kAttr, line);
        if (peek().type == Token::Type::kInt) {
          a->kind = Expr::Kind::kItem;
          MH_ASSIGN_OR_RETURN(ExprPtr index, parse_primary());
          a->args = {e, index};
        } else {
          MH_ASSIGN_OR_RETURN(a->name, expect_name());
          a->args = {e};
        }
        e = a;
      } else if (at_op("[")) {
        ++i_;
        ExprPtr parts[3];
        bool slice = false;
        for (int k = 0; k < 3; ++k) {
          if (!at_op(":") && !at_op("]")) {
            MH_ASSIGN_OR_RETURN(parts[k], parse_expression());
          }
          if (at_op(":") && k < 2) {
            ++i_;
            slice = true;
            continue;
          }
          break;
        }
        MH_TRY(expect_op("]"));
        auto s = make(slice ? Expr::Kind::kSlice : Expr::Kind::kItem, line);
        s->args = {e, parts[0]};
        if (slice) s->args = {e, parts[0], parts[1], parts[2]};
        if (!slice && !parts[0]) return error("an empty subscript");
        e = s;
      } else if (at_op("(")) {
        auto c = make(Expr::Kind::kCall, line);
        c->args.push_back(e);
        MH_TRY(parse_arguments(*c));
        e = c;
      } else {
        return e;
      }
    }
  }

  Result<ExprPtr> parse_filters(ExprPtr e) {
    while (true) {
      const int line = peek().line;
      if (at_op("|")) {
        ++i_;
        auto f = make(Expr::Kind::kFilter, line);
        MH_ASSIGN_OR_RETURN(f->name, expect_name());
        if (!is_filter(f->name)) {
          return error("the filter '" + f->name + "' is not implemented by this engine");
        }
        f->args.push_back(e);
        if (at_op("(")) MH_TRY(parse_arguments(*f));
        MH_ASSIGN_OR_RETURN(e, parse_postfix(f));
      } else if (at_name("is")) {
        ++i_;
        auto t = make(Expr::Kind::kTest, line);
        if (at_name("not")) {
          ++i_;
          t->negate = true;
        }
        MH_ASSIGN_OR_RETURN(t->name, expect_name());
        if (!is_test(t->name)) {
          return error("the test '" + t->name + "' is not implemented by this engine");
        }
        t->args.push_back(e);
        if (at_op("(")) {
          MH_TRY(parse_arguments(*t));
        } else if (peek().type == Token::Type::kString || peek().type == Token::Type::kInt ||
                   peek().type == Token::Type::kFloat ||
                   (peek().type == Token::Type::kName && peek().value != "and" &&
                    peek().value != "or" && peek().value != "else" && peek().value != "if" &&
                    peek().value != "in" && peek().value != "not" && peek().value != "is")) {
          // A test with one argument may omit the parentheses: `x is divisibleby 3`.
          MH_ASSIGN_OR_RETURN(ExprPtr arg, parse_primary());
          t->args.push_back(arg);
        }
        e = t;
      } else {
        return e;
      }
    }
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int nesting_ = 0, depth_ = 0, loops_ = 0;
  bool has_generation_ = false;
};

}  // namespace

Result<Template> Template::parse(std::string_view source) {
  if (source.size() > kMaxTemplateBytes) {
    return invalid_argument("the chat template is longer than " +
                            std::to_string(kMaxTemplateBytes) + " bytes");
  }
  // Jinja2's newline handling: "\r\n" and "\r" are newlines, and one trailing newline goes.
  std::string text;
  text.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      text += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      text += source[i];
    }
  }
  if (!text.empty() && text.back() == '\n') text.pop_back();
  MH_ASSIGN_OR_RETURN(std::vector<Token> tokens, Lexer(std::move(text)).run());
  Template t;
  MH_ASSIGN_OR_RETURN(t.root_, Parser(std::move(tokens)).parse_template(t.has_generation_));
  return t;
}

}  // namespace mh::engine::jinja
