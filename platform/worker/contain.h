// mh-worker contain: the worker sandbox entered by the worker itself, for a worker that no
// executor of ours forks (a Slurm batch job runs `mh-worker contain <sandbox> -- mh-worker
// train …`). The same containment as a local worker's (platform/executor/sandbox.h): its
// directory is the one it starts in.
#pragma once

namespace mh::worker {

// argv[0] is mh-worker, argv[1] "contain". Enters the sandbox and execs the program after "--";
// returns only on failure (2: bad arguments, 126: the sandbox or the exec failed), having said
// why on stderr.
int contain(int argc, char** argv);

}  // namespace mh::worker
