// run_daemon: assembles macrohardd from its parts (store, blobs, router, server), serves until
// SIGTERM or SIGINT, then stops gracefully. Returns the process exit code.
#pragma once

#include "platform/main/config.h"

namespace mh::daemon {

int run_daemon(const DaemonConfig& config);

}  // namespace mh::daemon
