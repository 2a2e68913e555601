// The models' HTTP routes: GET /v1/models[/{id}], POST /v1/models, DELETE /v1/models/{id}; for
// staff, GET/POST /v1/admin/base-models.
#pragma once

#include "platform/api/models/service.h"
#include "platform/api/transport.h"

namespace mh::api {

void add_model_routes(Router& router, Models& models);

}  // namespace mh::api
