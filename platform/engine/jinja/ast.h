// The syntax tree of a parsed template (parser.cpp builds it, render.cpp walks it).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "platform/engine/jinja/value.h"

namespace mh::engine::jinja {

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;

struct Expr {
  enum class Kind {
    kLiteral,  // value
    kName,     // name
    kList,     // args
    kTuple,    // args
    kDict,     // args: key, value, key, value...
    kAttr,     // args[0].name
    kItem,     // args[0][args[1]]
    kSlice,    // args[0][args[1]:args[2]:args[3]] (null: omitted)
    kCall,     // args[0](args[1..], kwargs)
    kFilter,   // args[0] | name(args[1..], kwargs)
    kTest,     // args[0] is [not: negate] name(args[1..])
    kUnary,    // name ("-", "+", "not") args[0]
    kBinary,   // args[0] name args[1]: + - * / // % ** ~ and or in "not in"
    kCompare,  // args[0] ops[0] args[1] ops[1] args[2]... (==, !=, <, >, <=, >=)
    kCond,     // args[0] if args[1] else args[2] (args[2] null: undefined)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negate = false;
};

struct Node;
using NodePtr = std::shared_ptr<const Node>;
using Body = std::vector<NodePtr>;

struct Node {
  enum class Kind {
    kBody,        // body
    kText,        // text
    kOutput,      // {{ expr }}
    kIf,          // branches (condition, body), else_body
    kFor,         // targets in expr [if filter]: body, else_body
    kSet,         // targets (a name, or "ns.attr" as name + attr) = expr
    kSetBlock,    // targets[0] = rendered body
    kMacro,       // name(params): body
    kBreak,
    kContinue,
    kGeneration,  // body, its output recorded
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr, filter;
  Body body, else_body;
  std::vector<std::pair<ExprPtr, Body>> branches;
  std::vector<std::string> targets;
  std::string attr;  // kSet on a namespace: targets[0].attr
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // kMacro: name, default (null: none)
};

}  // namespace mh::engine::jinja
