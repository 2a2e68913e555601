// The HTTP transport's names as the control plane's routes use them. The transport
// (platform/http) knows nothing of tenants or jobs; the routes here are its clients.
#pragma once

#include "platform/http/http.h"
#include "platform/http/metrics.h"
#include "platform/http/multipart.h"
#include "platform/http/router.h"

namespace mh::api {

using http::Access;
using http::answer_later;
using http::Authenticator;
using http::BodySink;
using http::Headers;
using http::HttpMetrics;
using http::Later;
using http::list_response;
using http::MultipartParser;
using http::PageRequest;
using http::parse_json_object;
using http::parse_page;
using http::PartHeaders;
using http::Principal;
using http::Request;
using http::Response;
using http::ResponseStream;
using http::Router;
using http::Runs;

}  // namespace mh::api
