import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import PlaneCore
import Synchronization

/// The RFC 8555 protocol over AsyncHTTPClient: the directory, nonces (a `badNonce` answer is
/// retried with the fresh nonce it carries), JWS-signed POSTs and the resources an order
/// needs. It holds no account or order state; `CertificateIssuer` drives the flow.
public final class ACMEClient: Sendable {
    public let directoryURL: String
    let logger: Logger
    private let httpConfiguration: HTTPClient.Configuration
    /// Made on first use, so a client that never sent anything needs no shutdown.
    private let httpClient = Mutex<HTTPClient?>(nil)
    private let nonces = Mutex<[String]>([])
    private let cachedDirectory = Mutex<ACMEDirectory?>(nil)
    /// A request answered `badNonce` is sent again with a new nonce this many times (pebble
    /// in the tests rejects 30 % of good nonces: five retries still failed about one test
    /// run in a hundred; ten make it one in tens of thousands).
    static let badNonceRetries = 10
    /// The longest one exchange may take, answer and body (a server sending its body a byte
    /// at a time never trips the read timeout).
    let requestTimeout: Duration

    /// An answer of the ACME server.
    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
        var location: String? { headers.first(name: "Location") }
        /// `Retry-After` in seconds or as an HTTP date, if present.
        var retryAfter: Duration? { ACMEClient.retryAfter(headers.first(name: "Retry-After")) }
    }

    /// - Parameters:
    ///   - caBundlePath: PEM file of extra roots to trust for the ACME server's own TLS
    ///     (besides the system's), e.g. pebble's test CA.
    public init(directoryURL: String, caBundlePath: String? = nil, logger: Logger, requestTimeout: Duration = .seconds(30)) throws(ACMEError) {
        guard let url = URL(string: directoryURL), let scheme = url.scheme, ["https", "http"].contains(scheme), url.host != nil else {
            throw ACMEError(.configuration, "[acme] server '\(directoryURL)' is not an http(s) URL of an ACME directory, e.g. https://acme-v02.api.letsencrypt.org/directory.")
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caBundlePath {
            do {
                tls.additionalTrustRoots = [.certificates(try NIOSSLCertificate.fromPEMFile(caBundlePath))]
            } catch {
                throw ACMEError(.configuration, "[acme] ca_bundle '\(caBundlePath)' is not a readable PEM file of CA certificates.", cause: error)
            }
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(max(requestTimeout.components.seconds, 1)))
        configuration.redirectConfiguration = .disallow
        self.directoryURL = directoryURL
        self.requestTimeout = requestTimeout
        self.httpConfiguration = configuration
        self.logger = logger
    }

    var http: HTTPClient {
        httpClient.withLock { client in
            if let client { return client }
            let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
            client = made
            return made
        }
    }

    /// A client dropped without `shutdown()` (a failed start, a test that stopped early)
    /// still ends its HTTP client, in a task that keeps it alive until then: AsyncHTTPClient
    /// traps when a client that was not shut down is deinitialized, which took the whole
    /// process down.
    deinit {
        if let client = httpClient.withLock({ $0 }) {
            Task { try? await client.shutdown() }
        }
    }

    /// Ends the HTTP client (also done, later, when the last reference goes).
    public func shutdown() async {
        guard let client = httpClient.withLock({ value -> HTTPClient? in defer { value = nil }; return value }) else { return }
        try? await client.shutdown()
    }

    // MARK: Resources

    /// The directory (fetched once per client).
    public func directory() async throws(ACMEError) -> ACMEDirectory {
        if let directory = cachedDirectory.withLock({ $0 }) { return directory }
        let response = try await send(directoryURL, method: .GET)
        guard response.status == 200 else {
            throw problem(response, doing: "fetching the ACME directory \(directoryURL)")
        }
        let directory: ACMEDirectory = try decode(response, as: "directory")
        cachedDirectory.withLock { $0 = directory }
        return directory
    }

    /// A signed POST (payload nil: POST-as-GET). Answers 4xx/5xx throw `.serverProblem` with
    /// the server's detail, after the `badNonce` retries.
    func post(_ url: String, payload: String?, key: ACMEAccountKey, signer: JSONWebSignature.Signer,
              accept: String? = nil, doing what: String) async throws(ACMEError) -> Response {
        var attempt = 0
        while true {
            let nonce = try await nextNonce()
            let jws = try JSONWebSignature.sign(payload: payload, url: url, nonce: nonce, key: key, signer: signer)
            var headers: [(String, String)] = [("Content-Type", "application/jose+json")]
            if let accept { headers.append(("Accept", accept)) }
            let response = try await send(url, method: .POST, headers: headers, body: Array(jws.json.utf8))
            if response.status < 400 { return response }
            let error = problem(response, doing: what)
            if let detail = Self.problemDocument(response), detail.isBadNonce, attempt < Self.badNonceRetries {
                attempt += 1
                logger.debug("acme.bad_nonce_retry", metadata: ["acme.url": "\(url)", "acme.attempt": "\(attempt)"])
                continue
            }
            throw error
        }
    }

    /// A fresh nonce: one the last answer carried, or a new one from `newNonce`.
    func nextNonce() async throws(ACMEError) -> String {
        if let nonce = nonces.withLock({ $0.popLast() }) { return nonce }
        let directory = try await directory()
        let response = try await send(directory.newNonce, method: .HEAD)
        guard let nonce = response.headers.first(name: "Replay-Nonce") else {
            throw ACMEError(.protocolViolation, "The ACME server's newNonce (\(directory.newNonce)) answered \(response.status) without a Replay-Nonce header.")
        }
        return nonce
    }

    /// One HTTP exchange; keeps the `Replay-Nonce` of the answer.
    func send(_ url: String, method: HTTPMethod, headers: [(String, String)] = [], body: [UInt8]? = nil) async throws(ACMEError) -> Response {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "User-Agent", value: "plane-swift-acme")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response: Response
        do {
            let http = http
            let limit = requestTimeout
            let request = request
            response = try await withTimeLimit(limit) {
                let answer = try await http.execute(request, timeout: .seconds(max(limit.components.seconds, 1)))
                let bytes = method == .HEAD ? ByteBuffer() : try await answer.body.collect(upTo: 4 << 20)
                return Response(status: Int(answer.status.code), headers: answer.headers, body: Array(bytes.readableBytesView))
            }
        } catch {
            throw ACMEError(.serverUnreachable, "The ACME server did not answer \(method) \(url); check [acme] server, the network and (for a private CA) [acme] ca_bundle.", cause: error)
        }
        if let nonce = response.headers.first(name: "Replay-Nonce") {
            nonces.withLock { $0 = [nonce] }
        }
        return response
    }

    // MARK: Decoding

    func decode<T: Decodable>(_ response: Response, as what: String) throws(ACMEError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(response.body))
        } catch {
            let text = String(decoding: response.body.prefix(300), as: UTF8.self)
            throw ACMEError(.protocolViolation, "The ACME server's \(what) is not what RFC 8555 describes: \(text)", cause: error)
        }
    }

    static func problemDocument(_ response: Response) -> ACMEProblem? {
        try? JSONDecoder().decode(ACMEProblem.self, from: Data(response.body))
    }

    /// The error for a 4xx/5xx answer, with the server's own words.
    func problem(_ response: Response, doing what: String) -> ACMEError {
        if let problem = Self.problemDocument(response) {
            return ACMEError(.serverProblem, "The ACME server refused \(what): \(problem) (HTTP \(response.status)).")
        }
        let text = String(decoding: response.body.prefix(300), as: UTF8.self)
        return ACMEError(.serverProblem, "The ACME server answered HTTP \(response.status) \(what): \(text)")
    }

    /// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3).
    static func retryAfter(_ value: String?, now: Date = Date()) -> Duration? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if let seconds = Int(value) { return .seconds(min(max(0, seconds), 365 * 86_400)) }
        guard let date = HTTPDate.parse(value) else { return nil }
        // A server's date may be any year: bounded (to a year) before it becomes an integer.
        let milliseconds = date.timeIntervalSince(now) * 1000
        guard milliseconds.isFinite else { return nil }
        return .milliseconds(Int64(min(max(0, milliseconds), 365 * 86_400_000)))
    }
}
