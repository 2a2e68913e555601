// The fine-tuning jobs' HTTP routes, OpenAI's paths: POST/GET /v1/fine_tuning/jobs,
// GET /v1/fine_tuning/jobs/{id}, POST …/{id}/cancel, GET …/{id}/events (?stream=true for
// server-sent events), GET …/{id}/checkpoints. Each runs on the handler pool.
#pragma once

#include "platform/api/jobs/service.h"
#include "platform/api/transport.h"

namespace mh::api {

void add_fine_tuning_routes(Router& router, FineTuning& jobs);

}  // namespace mh::api
