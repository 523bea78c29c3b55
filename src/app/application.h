// Wires the daemon together: command line, config, data directory, pipeline, HTTP server, signals.
#pragma once

namespace adpulse {

// Runs `adpulse [serve] [flags]`; returns the process exit code.
int RunApplication(int argc, char** argv);

}  // namespace adpulse
