// What mh-worker's subcommands share: how a failure ends the process. A bad input (a file, an
// argument) exits 2 with its message, an internal error 1.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "platform/base/status.h"

namespace mh::worker {

inline constexpr int kBadInput = 2;

[[noreturn]] inline void fail(const Status& s) {
  std::fprintf(stderr, "mh-worker: %s\n", s.message().c_str());
  std::exit(s.code() == Code::kInternal ? 1 : kBadInput);
}

template <typename T>
T need(Result<T> r) {
  if (!r.ok()) fail(r.status());
  return std::move(r).value();
}

}  // namespace mh::worker
