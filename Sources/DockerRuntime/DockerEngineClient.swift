import AsyncHTTPClient
import ContainerRuntime
import Foundation
import NIOCore
import NIOHTTP1
import PlaneCore

/// The Docker Engine API over a unix socket (or `http://host:port`), with AsyncHTTPClient.
/// Bodies are handled as `JSONValue` (Docker's JSON is large and loosely typed).
struct DockerEngineClient: Sendable {
    /// `http+unix://<socket, percent-encoded>` or `http://host:port`.
    let baseURL: String
    let endpointDescription: String
    var apiVersion: String

    init(endpoint: String, apiVersion: String = DockerEngineClient.preferredAPIVersion) throws(RuntimeError) {
        if endpoint.hasPrefix("http://") {
            baseURL = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        } else if endpoint.hasPrefix("unix://") || endpoint.hasPrefix("/") {
            let path = endpoint.hasPrefix("unix://") ? String(endpoint.dropFirst("unix://".count)) : endpoint
            guard let encoded = path.addingPercentEncoding(withAllowedCharacters: .alphanumerics) else {
                throw RuntimeError(.invalidSpec, "Docker socket path '\(path)' cannot be used.")
            }
            baseURL = "http+unix://\(encoded)"
        } else {
            throw RuntimeError(.invalidSpec, "Docker endpoint '\(endpoint)' is neither a unix socket path (/var/run/docker.sock, unix://...) nor http://host:port.")
        }
        endpointDescription = endpoint
        self.apiVersion = apiVersion
    }

    /// The newest Engine API version we speak; older daemons are spoken to in theirs.
    static let preferredAPIVersion = "1.41"

    struct Response: Sendable {
        var status: Int
        var body: [UInt8]
        var json: JSONValue? { try? JSONParser.parse(body) }
        /// Docker's `{"message": "..."}` error text, or the raw body.
        var message: String {
            json?.objectValue?["message"]?.stringValue ?? String(decoding: body.prefix(500), as: UTF8.self)
        }
    }

    static func encodeQuery(_ query: [(String, String)]) -> String {
        guard !query.isEmpty else { return "" }
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return "?" + query.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&")
    }

    func makeRequest(_ method: HTTPMethod, _ path: String, query: [(String, String)], body: JSONValue?, headers: [(String, String)], versioned: Bool) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: baseURL + (versioned ? "/v\(apiVersion)" : "") + path + Self.encodeQuery(query))
        request.method = method
        // AsyncHTTPClient sends no Host header for http+unix URLs; dockerd requires one.
        request.headers.add(name: "Host", value: "docker")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: JSONWriter.write(body)))
        }
        return request
    }

    func unavailable(_ error: any Error) -> RuntimeError {
        RuntimeError(.unavailable, "Cannot reach the Docker daemon at \(endpointDescription); is dockerd running and is its socket readable?", underlying: error)
    }

    /// A request whose whole answer is read (up to 64 MiB).
    func call(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: JSONValue? = nil,
              headers: [(String, String)] = [], timeout: Duration = .seconds(60), versioned: Bool = true) async throws(RuntimeError) -> Response {
        let request = makeRequest(method, path, query: query, body: body, headers: headers, versioned: versioned)
        do {
            let response = try await execute(request, timeout: timeout)
            let bytes = try await response.body.collect(upTo: 64 << 20)
            return Response(status: Int(response.status.code), body: Array(bytes.readableBytesView))
        } catch {
            throw unavailable(error)
        }
    }

    /// A request whose answer is a stream (events, logs, pull progress): returns the status
    /// and the body, read as it arrives. The head must come within `headTimeout`.
    func stream(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: JSONValue? = nil,
                headers: [(String, String)] = [], headTimeout: Duration = .seconds(60)) async throws(RuntimeError) -> (Int, HTTPClientResponse.Body) {
        let request = makeRequest(method, path, query: query, body: body, headers: headers, versioned: true)
        do {
            let response = try await execute(request, timeout: headTimeout)
            return (Int(response.status.code), response.body)
        } catch {
            throw unavailable(error)
        }
    }

    /// Sends a request. A pooled keep-alive connection that the daemon (or a proxy in front
    /// of it) closed while idle makes the next request on it fail before the daemon read it:
    /// the write fails (`ioOnClosedChannel`) or the peer's kernel answers with a reset
    /// (ECONNRESET/EPIPE). Such a request is sent once more on a fresh connection, as HTTP
    /// clients do for reused connections. Idempotent methods are also retried once when the
    /// connection closed before any answer came.
    private func execute(_ request: HTTPClientRequest, timeout: Duration) async throws -> HTTPClientResponse {
        let deadline = TimeAmount.nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000)
        do {
            return try await Self.http.execute(request, timeout: deadline)
        } catch let error where Self.isStaleConnection(error, method: request.method) {
            return try await Self.http.execute(request, timeout: deadline)
        }
    }

    /// The HTTP client for the daemon. Followed logs and the event stream each hold a
    /// connection for as long as they run, so the pool must allow many more connections
    /// than AsyncHTTPClient's default of 8 per host, or a busy drone's ordinary calls queue
    /// behind the streams until they time out. Lives as long as the process.
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 1024)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    static func isStaleConnection(_ error: any Error, method: HTTPMethod) -> Bool {
        if let channelError = error as? ChannelError, channelError == .ioOnClosedChannel { return true }
        if let ioError = error as? IOError, ioError.errnoCode == ECONNRESET || ioError.errnoCode == EPIPE { return true }
        if let clientError = error as? HTTPClientError, clientError == .remoteConnectionClosed {
            return [.GET, .HEAD, .DELETE].contains(method)
        }
        return false
    }
}
