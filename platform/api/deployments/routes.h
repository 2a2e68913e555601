// The deployments' HTTP routes: POST/GET /v1/deployments, GET/PATCH/DELETE
// /v1/deployments/{id} (and the same under /v1/admin/deployments for staff's), and the
// OpenAI-compatible POST /v1/completions and /v1/chat/completions.
#pragma once

#include "platform/api/deployments/service.h"
#include "platform/api/transport.h"

namespace mh::api {

void add_deployment_routes(Router& router, Deployments& deployments);

}  // namespace mh::api
