#include "platform/mhctl/admin_commands.h"

#include <fmt/format.h>
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "licensing/audit_chain.h"
#include "platform/base/files.h"
#include "platform/base/time.h"

namespace mh::cli {
namespace {

namespace json = boost::json;

std::string str(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return "-";
  if (v->is_string()) return std::string(v->as_string());
  return json::serialize(*v);
}

void print_license(const json::object& l) {
  std::printf("%-24s %-10s %-16s %-20s %s (key %s)\n", str(l, "id").c_str(),
              str(l, "tenant").c_str(), str(l, "status").c_str(),
              rfc3339(l.at("expires_at").to_number<int64_t>()).c_str(), str(l, "licensee").c_str(),
              str(l, "key_id").c_str());
}

}  // namespace

// Runs fn, turning an SDK error into the exit code and a message.
int guarded(const std::function<int()>& fn) {
  try {
    return fn();
  } catch (const macrohard::Error& e) {
    std::fprintf(stderr, "mhctl: %s (%s, HTTP %d, request %s)\n", e.what(), e.code_name(),
                 e.http_status(), e.request_id().empty() ? "-" : e.request_id().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mhctl: %s\n", e.what());
  }
  return 1;
}

// `usage` (tenants) and `admin usage export` (staff); defined below.
void add_usage_commands(CLI::App& app, CLI::App& admin_parent,
                        std::function<macrohard::Client()> client, int* exit_code);

void add_admin_commands(CLI::App& app, std::function<macrohard::Client()> client, bool* json_out,
                        int* exit_code) {
  auto* admin = app.add_subcommand("admin", "platform staff's commands (needs an admin key)");
  admin->require_subcommand(1);
  add_usage_commands(app, *admin, client, exit_code);

  auto* license = admin->add_subcommand("license", "licenses installed on the platform");
  license->require_subcommand(1);
  auto file = std::make_shared<std::string>();
  auto id = std::make_shared<std::string>();
  auto reason = std::make_shared<std::string>();

  auto* install = license->add_subcommand("install", "install a license file (creates its tenant)");
  install->add_option("file", *file, "the license file")->required();
  install->callback([=] {
    *exit_code = guarded([&] {
      auto text = read_small_file(*file, 64 * 1024);
      if (!text.ok()) throw std::runtime_error(text.status().message());
      std::string body = json::serialize(json::object{{"license", *text}});
      std::string out = client().request_json("POST", "/v1/admin/licenses", body);
      if (*json_out) {
        std::printf("%s\n", out.c_str());
      } else {
        auto l = json::parse(out).as_object();
        std::printf("installed %s for %s (tenant %s), %s, expires %s\n", str(l, "id").c_str(),
                    str(l, "licensee").c_str(), str(l, "tenant").c_str(), str(l, "status").c_str(),
                    rfc3339(l.at("expires_at").to_number<int64_t>()).c_str());
      }
      return 0;
    });
  });

  auto* list = license->add_subcommand("list", "list installed licenses");
  list->callback([=] {
    *exit_code = guarded([&] {
      std::string after;
      if (!*json_out) {
        std::printf("%-24s %-10s %-16s %-20s %s\n", "ID", "TENANT", "STATUS", "EXPIRES",
                    "LICENSEE");
      }
      for (;;) {
        std::string path =
            "/v1/admin/licenses?limit=100" + (after.empty() ? "" : "&after=" + after);
        auto page = json::parse(client().request_json("GET", path)).as_object();
        for (const auto& l : page.at("data").as_array()) {
          if (*json_out) {
            std::printf("%s\n", json::serialize(l).c_str());
          } else {
            print_license(l.as_object());
          }
        }
        if (!page.at("has_more").as_bool()) break;
        after = str(page, "last_id");
      }
      return 0;
    });
  });

  auto* show = license->add_subcommand("show", "show one installed license");
  show->add_option("id", *id, "license id")->required();
  show->callback([=] {
    *exit_code = guarded([&] {
      std::printf("%s\n", client().request_json("GET", "/v1/admin/licenses/" + *id).c_str());
      return 0;
    });
  });

  auto* revoke = license->add_subcommand("revoke", "revoke a license, at once, everywhere");
  revoke->add_option("id", *id, "license id")->required();
  revoke->add_option("--reason", *reason, "why (kept in the audit log)");
  revoke->callback([=] {
    *exit_code = guarded([&] {
      std::string body = json::serialize(json::object{{"reason", *reason}});
      auto l =
          json::parse(client().request_json("POST", "/v1/admin/licenses/" + *id + "/revoke", body))
              .as_object();
      std::printf("revoked %s (tenant %s): %s\n", str(l, "id").c_str(), str(l, "tenant").c_str(),
                  str(l, "revoke_reason").c_str());
      return 0;
    });
  });

  // admin tenant …
  auto* tenant = admin->add_subcommand("tenant", "tenants: create, list, show, suspend, resume");
  tenant->require_subcommand(1);
  struct TenantArgs {
    std::string id, name, reason, role = "owner", key_name = "owner";
    std::optional<double> rps;
    std::optional<int64_t> burst, storage;
  };
  auto ta = std::make_shared<TenantArgs>();
  auto limits_body = [ta] {
    json::object body;
    if (ta->rps) body["rate_limit_rps"] = *ta->rps;
    if (ta->burst) body["rate_limit_burst"] = *ta->burst;
    if (ta->storage) body["storage_limit_bytes"] = *ta->storage;
    return body;
  };
  auto add_limit_flags = [ta](CLI::App* cmd) {
    cmd->add_option("--rate-limit-rps", ta->rps, "sustained requests per second");
    cmd->add_option("--rate-limit-burst", ta->burst, "requests allowed at once");
    cmd->add_option("--storage-limit-bytes", ta->storage, "stored bytes allowed");
  };
  auto print_tenant = [](const json::object& t) {
    std::printf("%-16s %-24s %s\n", str(t, "id").c_str(), str(t, "name").c_str(),
                t.at("suspended_at").is_null()
                    ? "active"
                    : ("suspended: " + str(t, "suspend_reason")).c_str());
  };
  auto* tcreate = tenant->add_subcommand("create", "create a tenant");
  tcreate->add_option("id", ta->id, "tenant id (a-z, 0-9, . _ -)")->required();
  tcreate->add_option("--name", ta->name, "the company's name");
  add_limit_flags(tcreate);
  tcreate->callback([=] {
    *exit_code = guarded([&] {
      json::object body = limits_body();
      body["id"] = ta->id;
      if (!ta->name.empty()) body["name"] = ta->name;
      print_tenant(
          json::parse(client().request_json("POST", "/v1/admin/tenants", json::serialize(body)))
              .as_object());
      return 0;
    });
  });
  auto* tlist = tenant->add_subcommand("list", "list tenants");
  tlist->callback([=] {
    *exit_code = guarded([&] {
      auto page = json::parse(client().request_json("GET", "/v1/admin/tenants?limit=100"));
      for (const auto& t : page.at("data").as_array()) print_tenant(t.as_object());
      return 0;
    });
  });
  auto* tshow = tenant->add_subcommand("show", "a tenant, its limits and its license");
  tshow->add_option("id", ta->id)->required();
  tshow->callback([=] {
    *exit_code = guarded([&] {
      std::printf("%s\n", client().request_json("GET", "/v1/admin/tenants/" + ta->id).c_str());
      return 0;
    });
  });
  auto* tsuspend = tenant->add_subcommand("suspend", "refuse every request of the tenant's keys");
  tsuspend->add_option("id", ta->id)->required();
  tsuspend->add_option("--reason", ta->reason, "shown to the tenant");
  tsuspend->callback([=] {
    *exit_code = guarded([&] {
      print_tenant(
          json::parse(client().request_json("POST", "/v1/admin/tenants/" + ta->id + "/suspend",
                                            json::serialize(json::object{{"reason", ta->reason}})))
              .as_object());
      return 0;
    });
  });
  auto* tresume = tenant->add_subcommand("resume", "lift a suspension");
  tresume->add_option("id", ta->id)->required();
  tresume->callback([=] {
    *exit_code = guarded([&] {
      print_tenant(
          json::parse(client().request_json("POST", "/v1/admin/tenants/" + ta->id + "/resume"))
              .as_object());
      return 0;
    });
  });
  auto* tlimits = tenant->add_subcommand("limits", "change a tenant's rate and storage limits");
  tlimits->add_option("id", ta->id)->required();
  add_limit_flags(tlimits);
  tlimits->callback([=] {
    *exit_code = guarded([&] {
      std::printf("%s\n", client()
                              .request_json("POST", "/v1/admin/tenants/" + ta->id + "/limits",
                                            json::serialize(limits_body()))
                              .c_str());
      return 0;
    });
  });
  auto* tkey = tenant->add_subcommand("key", "make a key for the tenant (its first owner key)");
  tkey->add_option("id", ta->id)->required();
  tkey->add_option("--name", ta->key_name)->capture_default_str();
  tkey->add_option("--role", ta->role, "owner, developer or viewer")->capture_default_str();
  tkey->callback([=] {
    *exit_code = guarded([&] {
      auto k = json::parse(client().request_json("POST", "/v1/admin/tenants/" + ta->id + "/keys",
                                                 json::serialize(json::object{
                                                     {"name", ta->key_name}, {"role", ta->role}})))
                   .as_object();
      std::printf("%s key %s for tenant %s (shown once; keep it safe):\n%s\n",
                  str(k, "role").c_str(), str(k, "id").c_str(), str(k, "tenant").c_str(),
                  str(k, "key").c_str());
      return 0;
    });
  });

  auto* base = admin->add_subcommand("base-models", "the base models every tenant sees");
  base->require_subcommand(1);
  struct BaseArgs {
    std::string dir, name;
  };
  auto ba = std::make_shared<BaseArgs>();
  auto* bpublish = base->add_subcommand(
      "publish",
      "publish a directory on the platform's host: a config.json alone (a preset that trains "
      "from scratch) or a Hugging Face model");
  bpublish->add_option("dir", ba->dir, "the directory, as the daemon's host sees it")->required();
  bpublish->add_option("--name", ba->name, "the base model's name")->required();
  bpublish->callback([=] {
    *exit_code = guarded([&] {
      const std::string dir = std::filesystem::absolute(ba->dir).string();
      auto m =
          json::parse(client().request_json(
                          "POST", "/v1/admin/base-models",
                          json::serialize(json::object{{"name", ba->name}, {"directory", dir}})))
              .as_object();
      std::printf("published %s: %s, %s, %lld parameters\n", str(m, "id").c_str(),
                  str(m, "kind").c_str(), str(m, "family").c_str(),
                  static_cast<long long>(m.at("parameters").to_number<int64_t>()));
      return 0;
    });
  });
  auto* blist = base->add_subcommand("list", "list the base models");
  blist->callback([=] {
    *exit_code = guarded([&] {
      auto page = json::parse(client().request_json("GET", "/v1/admin/base-models"));
      for (const auto& m : page.at("data").as_array()) {
        std::printf("%-24s %-7s %-6s %14lld\n", str(m.as_object(), "id").c_str(),
                    str(m.as_object(), "kind").c_str(), str(m.as_object(), "family").c_str(),
                    static_cast<long long>(m.at("parameters").to_number<int64_t>()));
      }
      return 0;
    });
  });

  auto* audit = admin->add_subcommand("audit", "the hash-chained audit log");
  audit->require_subcommand(1);
  // Fetches every entry, page by page, and the head the daemon records beside them.
  auto fetch = [client](std::vector<licensing::AuditEntry>* entries, licensing::ChainHead* head) {
    int64_t after = 0;
    macrohard::Client c = client();
    for (;;) {
      auto page = json::parse(c.request_json(
                                  "GET", fmt::format("/v1/admin/audit?limit=1000&after={}", after)))
                      .as_object();
      for (const auto& v : page.at("data").as_array()) {
        const auto& o = v.as_object();
        entries->push_back({o.at("seq").to_number<int64_t>(), o.at("at").to_number<int64_t>(),
                            str(o, "actor"), str(o, "action"), str(o, "subject"),
                            std::string(o.at("detail").as_string()), str(o, "prev_hash"),
                            str(o, "hash")});
        after = entries->back().seq;
      }
      const auto& h = page.at("head").as_object();
      *head = {h.at("seq").to_number<int64_t>(), str(h, "hash")};
      if (!page.at("has_more").as_bool()) return;
    }
  };
  auto* verify =
      audit->add_subcommand("verify", "check the whole chain here, not on the server's word");
  verify->callback([=] {
    *exit_code = guarded([&] {
      std::vector<licensing::AuditEntry> entries;
      licensing::ChainHead head;
      fetch(&entries, &head);
      auto verified = licensing::verify_audit_chain(entries, head);
      if (!verified.ok()) {
        std::printf("BROKEN: %s\n", verified.status().message().c_str());
        return 1;
      }
      std::printf("audit log intact: %lld entries, head %s\n",
                  static_cast<long long>(verified->seq), verified->hash.c_str());
      return 0;
    });
  });
  auto* show_log = audit->add_subcommand("list", "print the audit log");
  show_log->callback([=] {
    *exit_code = guarded([&] {
      std::vector<licensing::AuditEntry> entries;
      licensing::ChainHead head;
      fetch(&entries, &head);
      for (const auto& e : entries) {
        std::printf("%6lld %s %-22s %-18s %-26s %s\n", static_cast<long long>(e.seq),
                    rfc3339(e.at).c_str(), e.actor.c_str(), e.action.c_str(), e.subject.c_str(),
                    e.detail.c_str());
      }
      return 0;
    });
  });
}

void add_usage_commands(CLI::App& app, CLI::App& admin_parent,
                        std::function<macrohard::Client()> client, int* exit_code) {
  struct UsageArgs {
    std::string width = "total", group, dimension, tenant, out;
    std::optional<int64_t> start, end;
  };
  auto ua = std::make_shared<UsageArgs>();
  auto period = [ua] {
    std::string q;
    if (ua->start) q += fmt::format("&start_time={}", *ua->start);
    if (ua->end) q += fmt::format("&end_time={}", *ua->end);
    return q;
  };
  auto* usage = app.add_subcommand("usage", "what your tenant used (GPU-seconds, tokens, bytes)");
  usage->add_option("--bucket-width", ua->width, "1h, 1d or total")->capture_default_str();
  usage->add_option("--group-by", ua->group, "subject: one line per job, replica or file");
  usage->add_option("--dimension", ua->dimension,
                    "gpu_seconds, input_tokens, output_tokens, stored_bytes");
  usage->add_option("--start", ua->start, "Unix seconds (default: 30 days ago)");
  usage->add_option("--end", ua->end, "Unix seconds (default: now)");
  usage->callback([=] {
    *exit_code = guarded([&] {
      std::string path = "/v1/usage?bucket_width=" + ua->width + period();
      if (!ua->group.empty()) path += "&group_by=" + ua->group;
      if (!ua->dimension.empty()) path += "&dimension=" + ua->dimension;
      auto u = json::parse(client().request_json("GET", path)).as_object();
      std::printf("usage of %s from %s to %s\n", str(u, "tenant").c_str(),
                  rfc3339(u.at("start_time").to_number<int64_t>()).c_str(),
                  rfc3339(u.at("end_time").to_number<int64_t>()).c_str());
      for (const auto& v : u.at("data").as_array()) {
        const auto& line = v.as_object();
        std::printf("  %s  %-14s %16.0f  %s\n",
                    rfc3339(line.at("start_time").to_number<int64_t>()).c_str(),
                    str(line, "dimension").c_str(), line.at("quantity").to_number<double>(),
                    line.contains("subject_id")
                        ? (str(line, "subject_kind") + " " + str(line, "subject_id")).c_str()
                        : "");
      }
      return 0;
    });
  });
  auto* admin_usage = admin_parent.add_subcommand("usage", "every tenant's usage");
  admin_usage->require_subcommand(1);
  auto* exp = admin_usage->add_subcommand("export", "usage records as CSV");
  exp->add_option("--tenant", ua->tenant, "one tenant only");
  exp->add_option("--start", ua->start, "Unix seconds (default: 30 days ago)");
  exp->add_option("--end", ua->end, "Unix seconds (default: now)");
  exp->add_option("--out", ua->out, "write here (default: stdout)");
  exp->callback([=] {
    *exit_code = guarded([&] {
      std::string path = "/v1/admin/usage/export?x=1" + period();
      if (!ua->tenant.empty()) path += "&tenant=" + ua->tenant;
      std::string csv = client().request_json("GET", path);
      if (ua->out.empty()) {
        std::fputs(csv.c_str(), stdout);
      } else if (Status s = write_new_file(ua->out, csv, 0640); !s.ok()) {
        throw std::runtime_error(s.message());
      }
      return 0;
    });
  });
}

void add_key_commands(CLI::App& app, std::function<macrohard::Client()> client, int* exit_code) {
  auto* keys = app.add_subcommand("keys", "your tenant's API keys (needs an owner key)");
  keys->require_subcommand(1);
  auto name = std::make_shared<std::string>();
  auto role = std::make_shared<std::string>("developer");
  auto id = std::make_shared<std::string>();
  auto* list = keys->add_subcommand("list", "list the tenant's keys");
  list->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      std::string after;
      for (;;) {
        auto page = c.list_keys(after, 100);
        for (const auto& k : page.items) {
          std::printf("%-22s %-10s %-16s %-20s %s\n", k.id.c_str(), k.role.c_str(),
                      k.prefix.c_str(), k.name.c_str(), k.revoked_at ? "revoked" : "live");
        }
        if (!page.has_more) break;
        after = page.last_id;
      }
      return 0;
    });
  });
  auto* create = keys->add_subcommand("create", "make a key");
  create->add_option("--name", *name)->required();
  create->add_option("--role", *role, "owner, developer or viewer")->capture_default_str();
  create->callback([=] {
    *exit_code = guarded([&] {
      auto k = client().create_key(*name, *role);
      std::printf("%s key %s (shown once; keep it safe):\n%s\n", k.role.c_str(), k.id.c_str(),
                  k.secret.c_str());
      return 0;
    });
  });
  auto* revoke = keys->add_subcommand("revoke", "revoke a key at once");
  revoke->add_option("id", *id)->required();
  revoke->callback([=] {
    *exit_code = guarded([&] {
      client().revoke_key(*id);
      std::printf("revoked %s\n", id->c_str());
      return 0;
    });
  });
}

}  // namespace mh::cli
