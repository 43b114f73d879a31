import Foundation
import Logging
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The proxy's TLS key and certificate chain, from two PEM files, reloaded when the files
/// change (the certificate refresher writes them): new handshakes use the new pair as soon
/// as both files parse and belong together; a broken or mismatched pair is logged and the
/// previous one stays. TLS 1.2 and 1.3, ALPN `http/1.1`.
public final class TLSCertificateStore: Sendable {
    public let keyPath: String
    public let certificatePath: String
    private let logger: Logger

    struct FileStamp: Equatable {
        var modified: Date?
        var size: Int?
        var inode: Int?
    }

    private struct State {
        var context: NIOSSLContext?
        var stamps: [FileStamp] = []
    }

    private let state = Mutex(State())

    public init(keyPath: String, certificatePath: String, logger: Logger) {
        self.keyPath = keyPath
        self.certificatePath = certificatePath
        self.logger = logger
    }

    /// The TLS context for new connections; nil until a valid pair was loaded.
    public var current: NIOSSLContext? { state.withLock { $0.context } }

    /// Loads the pair now. Returns the error when it is unusable (the old pair stays).
    @discardableResult
    public func reload() -> ProxyError? {
        let stamps = [stamp(keyPath), stamp(certificatePath)]
        do {
            let context = try Self.makeContext(keyPath: keyPath, certificatePath: certificatePath)
            state.withLock {
                $0.context = context
                $0.stamps = stamps
            }
            logger.info("proxy.certificate_loaded", metadata: ["path": "\(certificatePath)"])
            return nil
        } catch {
            state.withLock { $0.stamps = stamps }
            logger.warning("proxy.certificate_invalid", metadata: ["path": "\(certificatePath)", "error": "\(error)"])
            return error
        }
    }

    /// Reloads whenever either file changes, until cancelled.
    public func watch(every interval: Duration = .seconds(1)) async {
        while !Task.isCancelled {
            let stamps = [stamp(keyPath), stamp(certificatePath)]
            if stamps != state.withLock({ $0.stamps }) { reload() }
            try? await Task.sleep(for: interval)
        }
    }

    static func makeContext(keyPath: String, certificatePath: String) throws(ProxyError) -> NIOSSLContext {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
            guard !chain.isEmpty else { throw ProxyError(.certificateInvalid, "\(certificatePath) holds no certificate.") }
            let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
            configuration.minimumTLSVersion = .tlsv12
            configuration.applicationProtocols = ["http/1.1"]
            return try NIOSSLContext(configuration: configuration)
        } catch let error as ProxyError {
            throw error
        } catch {
            throw ProxyError(.certificateInvalid, "The key \(keyPath) and certificate \(certificatePath) cannot be used together (unreadable, not PEM, or not a pair).", cause: error)
        }
    }

    private func stamp(_ path: String) -> FileStamp {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        return FileStamp(modified: attributes?[.modificationDate] as? Date, size: (attributes?[.size] as? NSNumber)?.intValue,
                         inode: (attributes?[.systemFileNumber] as? NSNumber)?.intValue)
    }
}

/// Runs `TLSCertificateStore.watch()` as a `Service` of the drone.
public struct CertificateWatcher: Service {
    public let store: TLSCertificateStore
    public init(store: TLSCertificateStore) { self.store = store }
    public func run() async throws {
        await cancelWhenGracefulShutdown { await store.watch() }
    }
}
