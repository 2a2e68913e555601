// `mhctl license …`: key generation, issuance, inspection and verification, all offline.
#pragma once

#include <CLI/CLI.hpp>

namespace mh::licensing {

// Adds the `license` command and its subcommands to mhctl. Each subcommand sets `*exit_code`
// when it runs.
void add_license_commands(CLI::App& app, int* exit_code);

}  // namespace mh::licensing
