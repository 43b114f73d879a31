// plane-runtime-driver: runs the OCI runtime where a test cannot run it in-process, such as
// inside a network namespace of the test's own (`OCINetworkNamespaceTests` starts it with
// `unshare --net`). It reads one JSON command per line on stdin and answers each with one
// JSON line on stdout: `{"ok": true, ...}` or `{"ok": false, "error": "..."}`.
//
//   {"command": "make", "state_dir": DIR, "drone": ID, "oci": {[agent.oci] keys}}
//   {"command": "start", "backend": ID, "image": REF, "port": N}   → "address"
//   {"command": "status" | "remove", "backend": ID}                → "status"
//   {"command": "stop", "backend": ID, "grace_ms": N}
//   {"command": "list"}                                              → "backends": [{backend, address}]
//   {"command": "get", "host": H, "port": N, "path": P}             → "status", "body" (waits up to 10 s for an answer)
//   {"command": "run", "argv": [...]}                                → "status", "output"
//   {"command": "listen", "port": N}   keeps a TCP socket listening on 127.0.0.1:N of the driver
//   {"command": "close"}   drops the runtime, as an exiting drone does (backends keep running)
//
// A test helper, never installed; it ends when stdin closes.
import ContainerRuntime
import Foundation
import Logging
import OCIRuntime
import PlaneCore
import PlaneTestSupport

struct DriverFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

final class Driver {
    var runtime: OCIRuntime?
    var drone: DroneID = .random()
    var listeners: [Int32] = []
    var logger: Logger = {
        var logger = Logger(label: "plane-runtime-driver")
        logger.logLevel = ProcessInfo.processInfo.environment["DRIVER_LOG"] == nil ? .warning : .debug
        return logger
    }()

    func string(_ command: [String: Any], _ key: String) throws -> String {
        guard let value = command[key] as? String else { throw DriverFailure("'\(key)' (a string) is missing") }
        return value
    }

    func integer(_ command: [String: Any], _ key: String) throws -> Int {
        guard let value = command[key] as? Int else { throw DriverFailure("'\(key)' (an integer) is missing") }
        return value
    }

    func current() throws -> OCIRuntime {
        guard let runtime else { throw DriverFailure("no runtime; send make first") }
        return runtime
    }

    func backend(_ command: [String: Any]) throws -> BackendID {
        try BackendID(try string(command, "backend"))
    }

    func handle(_ command: [String: Any]) async throws -> [String: Any] {
        switch try string(command, "command") {
        case "make":
            let settings = try JSONSerialization.data(withJSONObject: command["oci"] ?? [String: Any]())
            let object = try JSONParser.parse(String(decoding: settings, as: UTF8.self)).objectValue ?? JSONObject()
            let configuration = try OCIRuntimeConfiguration(json: object, droneStateDirectory: try string(command, "state_dir"))
            drone = try DroneID(try string(command, "drone"))
            runtime = try await OCIRuntime.make(configuration: configuration, droneID: drone, logger: logger)
            return [:]
        case "start":
            let runtime = try current()
            let network: NetworkPlan = runtime.descriptor.capabilities.networkModes.contains(.host) ? .host(address: "127.0.0.1") : .bridge(network: nil)
            let spec = BackendSpec(backendID: try backend(command), droneID: drone, image: try string(command, "image"),
                                   port: UInt16(try integer(command, "port")), network: network, pullPolicy: .ifNotPresent)
            let handle = try await runtime.start(spec)
            return ["address": handle.address?.description ?? ""]
        case "status":
            return ["status": "\(try await current().status(of: try backend(command)))"]
        case "stop":
            try await current().stop(try backend(command), grace: .milliseconds(try integer(command, "grace_ms")))
            return [:]
        case "remove":
            try await current().remove(try backend(command))
            return [:]
        case "list":
            return ["backends": try await current().list().map { ["backend": $0.backendID.rawValue, "address": $0.address?.description ?? ""] }]
        case "listen":
            let port = try integer(command, "port")
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
            address.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard fd >= 0, bound == 0, listen(fd, 16) == 0 else { throw DriverFailure("cannot listen on 127.0.0.1:\(port): errno \(errno)") }
            listeners.append(fd)
            return [:]
        case "close":
            runtime = nil
            return [:]
        case "get":
            let probe = HTTPProbe(host: try string(command, "host"), port: try integer(command, "port"))
            let response = try await probe.waitUntilAnswering(try string(command, "path"))
            return ["status": response.status, "body": response.body]
        case "run":
            guard let argv = command["argv"] as? [String], let executable = argv.first else { throw DriverFailure("'argv' (a list of strings) is missing") }
            let result = try await SystemProgram.run(executable: executable, Array(argv.dropFirst()))
            return ["status": Int(result.status), "output": result.output]
        case let other:
            throw DriverFailure("unknown command '\(other)'")
        }
    }
}

let driver = Driver()
while let line = readLine() {
    var reply: [String: Any]
    do {
        guard let command = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { throw DriverFailure("not a JSON object") }
        reply = try await driver.handle(command)
        reply["ok"] = true
    } catch {
        reply = ["ok": false, "error": "\(error)"]
    }
    let data = (try? JSONSerialization.data(withJSONObject: reply, options: [.sortedKeys])) ?? Data(#"{"ok":false,"error":"unencodable reply"}"#.utf8)
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}
