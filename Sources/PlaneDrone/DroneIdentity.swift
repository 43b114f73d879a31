import Foundation
import PlaneCore

/// The drone id when `drone.toml` does not set one: generated once and kept in
/// `{state_dir}/drone_id` (v0.3.10 made a new one on every start).
public enum DroneIdentity {
    public static func load(stateDirectory: String) throws(DroneError) -> DroneID {
        let path = stateDirectory + "/drone_id"
        do {
            if FileManager.default.fileExists(atPath: path) {
                let text = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
                return try DroneID(text)
            }
            try PrivateFiles.directory(stateDirectory)
            let id = DroneID.random()
            try (id.rawValue + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            try PrivateFiles.restrictFile(path)
            return id
        } catch {
            throw DroneError(.startupFailed, "Cannot read or create the drone id in \(path): \(error). Set drone_id in drone.toml or make the state directory writable.", cause: error)
        }
    }
}

/// Finds the drone's public IP: a literal, or the (trimmed) body of a URL.
public enum PublicIPResolver {
    public static func resolve(_ source: PublicIPSource, attempts: Int = 10, pause: Duration = .seconds(2)) async throws(DroneError) -> String {
        switch source {
        case .literal(let text):
            guard isIPAddress(text) else { throw DroneError(.startupFailed, "[agent] ip '\(text)' is not an IP address.") }
            return text
        case .lookup(let url):
            var lastProblem = ""
            for attempt in 1...max(1, attempts) {
                do {
                    // Answer and body within 10 s (a read timeout never fires on a body sent a byte at a time).
                    let (status, body) = try await withTimeLimit(.seconds(10)) {
                        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
                        return (response.status.code, String(buffer: try await response.body.collect(upTo: 4096)).trimmingCharacters(in: .whitespacesAndNewlines))
                    }
                    if status == 200, isIPAddress(body) { return body }
                    lastProblem = "answered \(status) with '\(body.prefix(100))', not an IP address"
                } catch {
                    lastProblem = "\(error)"
                }
                if attempt < attempts { try? await Task.sleep(for: pause) }
            }
            throw DroneError(.startupFailed, "Cannot learn the public IP from \(url): \(lastProblem). Set [agent] ip to the address instead.")
        }
    }

    static func isIPAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }
}

import AsyncHTTPClient
import NIOCore
