// The files' HTTP routes, OpenAI's paths: POST /v1/files (an upload route: its body streams to
// the service's sink), GET /v1/files[/{id}[/content]], DELETE /v1/files/{id}.
#pragma once

#include "platform/api/files/service.h"
#include "platform/api/transport.h"

namespace mh::api {

void add_file_routes(Router& router, Files& files);

}  // namespace mh::api
