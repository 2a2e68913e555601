#include "platform/http/multipart.h"

#include <strings.h>

#include <fmt/format.h>

namespace mh::http {
namespace {

constexpr size_t kMaxHeaderBlock = 16 * 1024;
constexpr size_t kMaxBoundary = 70;  // RFC 2046

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The value of `key` among "; key=value" parameters (quoted or not).
std::string parameter(std::string_view header, std::string_view key) {
  size_t pos = 0;
  while ((pos = header.find(';', pos)) != std::string_view::npos) {
    std::string_view rest = trim(header.substr(pos + 1));
    pos += 1;
    if (rest.size() <= key.size() || strncasecmp(rest.data(), key.data(), key.size()) != 0 ||
        rest[key.size()] != '=') {
      continue;
    }
    std::string_view value = rest.substr(key.size() + 1);
    if (!value.empty() && value.front() == '"') {
      std::string out;
      for (size_t i = 1; i < value.size() && value[i] != '"'; ++i) {
        if (value[i] == '\\' && i + 1 < value.size()) ++i;
        out += value[i];
      }
      return out;
    }
    return std::string(trim(value.substr(0, value.find(';'))));
  }
  return {};
}

}  // namespace

Result<std::string> MultipartParser::boundary_of(std::string_view content_type) {
  if (content_type.size() < 19 ||
      strncasecmp(content_type.data(), "multipart/form-data", 19) != 0) {
    return invalid_argument("Content-Type must be multipart/form-data");
  }
  std::string boundary = parameter(content_type, "boundary");
  if (boundary.empty() || boundary.size() > kMaxBoundary) {
    return invalid_argument("multipart/form-data needs a boundary of 1 to 70 characters");
  }
  return boundary;
}

MultipartParser::MultipartParser(std::string boundary, Handler handler)
    : delimiter_("\r\n--" + boundary), handler_(std::move(handler)) {
  pending_ = "\r\n";  // the first boundary may start the body: treat it as after a line break
}

Status MultipartParser::feed(std::string_view data) {
  if (!error_.ok()) return error_;
  if (state_ == State::kDone) return {};  // the epilogue is ignored
  pending_.append(data);
  error_ = run();
  return error_;
}

Status MultipartParser::finish() {
  if (!error_.ok()) return error_;
  if (state_ != State::kDone) {
    error_ = invalid_argument("the multipart body ended before its closing boundary");
  }
  return error_;
}

Status MultipartParser::parse_headers(std::string_view block) {
  PartHeaders part;
  size_t start = 0;
  while (start < block.size()) {
    size_t end = block.find("\r\n", start);
    if (end == std::string_view::npos) end = block.size();
    std::string_view line = block.substr(start, end - start);
    start = end + 2;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return invalid_argument("malformed multipart part header");
    std::string_view name = line.substr(0, colon), value = trim(line.substr(colon + 1));
    if (strncasecmp(name.data(), "content-disposition", name.size()) == 0 && name.size() == 19) {
      if (value.size() < 9 || strncasecmp(value.data(), "form-data", 9) != 0) {
        return invalid_argument("multipart parts must be form-data");
      }
      part.name = parameter(value, "name");
      part.filename = parameter(value, "filename");
    } else if (strncasecmp(name.data(), "content-type", name.size()) == 0 && name.size() == 12) {
      part.content_type = value;
    }
  }
  if (part.name.empty()) return invalid_argument("a multipart part has no name");
  return handler_.begin_part(part);
}

Status MultipartParser::run() {
  for (;;) {
    switch (state_) {
      case State::kPreamble: {
        size_t at = pending_.find(delimiter_);
        if (at == std::string::npos) {
          if (pending_.size() > kMaxHeaderBlock) {
            return invalid_argument("no multipart boundary where the body begins");
          }
          return {};
        }
        size_t after = at + delimiter_.size();
        if (pending_.size() < after + 2) return {};
        if (pending_.compare(after, 2, "--") == 0) {
          return invalid_argument("the multipart body has no parts");
        }
        if (pending_.compare(after, 2, "\r\n") != 0) {
          return invalid_argument("malformed multipart boundary line");
        }
        pending_.erase(0, after + 2);
        state_ = State::kHeaders;
        break;
      }
      case State::kHeaders: {
        size_t end = pending_.find("\r\n\r\n");
        if (end == std::string::npos) {
          if (pending_.size() > kMaxHeaderBlock) {
            return invalid_argument("multipart part headers are too long");
          }
          return {};
        }
        MH_TRY(parse_headers(std::string_view(pending_).substr(0, end)));
        pending_.erase(0, end + 4);
        state_ = State::kBody;
        break;
      }
      case State::kBody: {
        size_t at = pending_.find(delimiter_);
        if (at == std::string::npos) {
          // Keep back what could be the start of a delimiter split across chunks.
          if (pending_.size() > delimiter_.size()) {
            size_t safe = pending_.size() - delimiter_.size();
            MH_TRY(handler_.part_data(std::string_view(pending_).substr(0, safe)));
            pending_.erase(0, safe);
          }
          return {};
        }
        size_t after = at + delimiter_.size();
        if (pending_.size() < after + 2) return {};  // need to see what follows the boundary
        if (at > 0) MH_TRY(handler_.part_data(std::string_view(pending_).substr(0, at)));
        MH_TRY(handler_.end_part());
        if (pending_.compare(after, 2, "--") == 0) {
          state_ = State::kDone;
          pending_.clear();
          return {};
        }
        if (pending_.compare(after, 2, "\r\n") != 0) {
          return invalid_argument("malformed multipart boundary line");
        }
        pending_.erase(0, after + 2);
        state_ = State::kHeaders;
        break;
      }
      case State::kDone:
        return {};
    }
  }
}

}  // namespace mh::http
