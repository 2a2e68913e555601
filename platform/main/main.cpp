// macrohardd: the Macrohard platform daemon. See docs/operations.md.
#include "platform/main/config.h"
#include "platform/main/daemon.h"

int main(int argc, char** argv) {
  mh::daemon::DaemonConfig config;
  if (int code = mh::daemon::parse_config(argc, argv, &config); code >= 0) return code;
  return mh::daemon::run_daemon(config);
}
