// The events a worker writes for the daemon, one JSON object per line on its event stream, as
// the daemon reads them. A worker parses tenant-supplied files, so its output is input: a line
// is taken only whole and well-typed, and anything else is refused with what is wrong, never
// thrown on the daemon's reader thread.
//
//   {"type":"step","step":N,"steps":N,"loss":X,"lr":X,...}          a training step
//   {"type":"checkpoint","step":N,"path":"…","valid_loss":X?}        a checkpoint written
//   {"type":"stopped","step":N,"checkpoint":"…"}                     stopped, resumable there
//   {"type":"done","step":N,"trained_tokens":N,"path":"…","valid_loss":X?}   the model written
//   {"type":"ready","port":N}                                       a replica serves on port N
//   {"type":"usage","tenant":"…","prompt_tokens":N,"completion_tokens":N}   a request's tokens
//   {"type":"stats",...}                                            a replica's counters
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "platform/base/status.h"

namespace mh::executor {

struct WorkerEvent {
  enum class Kind { kStep, kCheckpoint, kStopped, kDone, kReady, kUsage, kStats };
  Kind kind = Kind::kStep;
  int64_t step = 0, steps = 0;             // step, checkpoint, stopped, done
  double loss = 0, lr = 0;                 // step
  std::optional<double> valid_loss;        // checkpoint, done
  std::optional<int64_t> trained_tokens;   // done
  std::string path;                        // checkpoint, done; stopped: its checkpoint
  int64_t port = 0;                        // ready
  std::string tenant;                      // usage ("" when the request named none)
  int64_t prompt_tokens = 0, completion_tokens = 0;  // usage
  boost::json::object stats;               // stats: every field but "type"
};

// The longest line a worker may write; longer ones are refused unread.
inline constexpr size_t kMaxEventLine = 64 * 1024;

// The event on one line, or invalid_argument naming what is wrong with it.
Result<WorkerEvent> parse_worker_event(std::string_view line);

}  // namespace mh::executor
