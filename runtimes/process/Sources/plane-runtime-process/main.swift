import ContainerRuntime
import Foundation
import RuntimePluginKit

// plane-runtime-process: the reference runtime plugin (runtimes/process).
//
//   plane-runtime-process                 the plugin: the drone starts it with
//                                         PLANE_RUNTIME_SOCKET set
//   plane-runtime-process shim <dir>      one per backend, in a session of its own: runs
//                                         the backend, copies its output, records its exit
//   plane-runtime-process launch <dir>    the backend's first moments: process group,
//                                         cgroup, rlimits, seccomp, then exec
let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "shim" where arguments.count == 2:
    exit(ProcessShim.main(directory: ProcessBackendDirectory(path: arguments.last!)))
case "launch" where arguments.count == 2:
    ProcessLauncher.main(directory: ProcessBackendDirectory(path: arguments.last!))
default:
    let status = await RuntimePlugin.serve(calls: [.prepare, .events, .logs, .stats]) { context throws(RuntimeError) in
        try ProcessRuntime(context: context)
    }
    exit(status)
}
