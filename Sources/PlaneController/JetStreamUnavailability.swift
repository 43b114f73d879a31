import NATS

/// Why JetStream did not take a starting controller's streams and buckets when waiting can
/// help: a NATS cluster still electing its JetStream leader, or still waiting for enough
/// servers to place replicas, answers late or with a 503 for a while after it starts.
/// What cannot change by waiting (no JetStream on the server, a configuration JetStream
/// refuses) is `nil` and ends the start at once. Pure: unit-tested.
enum JetStreamUnavailability: Equatable, Sendable {
    /// No answer in time, or the connection went while asking.
    case notAnswering
    /// JetStream answered that it has no leader (503, `err_code` 10008 and the like).
    case noLeader
    /// JetStream cannot place the replicas yet (`err_code` 10023 insufficient resources,
    /// 10005 no suitable peers): fewer JetStream servers than `replicas` are in the cluster.
    case cannotPlace

    static let clusterNotAvailable = 10008
    static let insufficientResources = 10023
    static let noSuitablePeers = 10005
    static let notEnabledForAccount = 10039
    static let notEnabled = 10076

    init?(_ error: any Error) {
        guard let error = error as? NATSError else { return nil }
        switch error.code {
        case .timeout, .connectionLost, .reconnectBufferFull:
            self = .notAnswering
        case .jetStream:
            guard let api = error.jetStreamError else { return nil }
            switch api.errorCode {
            case Self.insufficientResources, Self.noSuitablePeers: self = .cannotPlace
            case Self.notEnabled, Self.notEnabledForAccount: return nil
            case Self.clusterNotAvailable: self = .noLeader
            default:
                guard api.code == 503 else { return nil }
                self = .noLeader
            }
        default:
            return nil
        }
    }

    /// What to do about a failure waiting cannot fix: JetStream missing, or JetStream
    /// refusing what the controller asks for (an existing stream or bucket of that name
    /// with a configuration it cannot take, a limit of the account).
    static func permanentAdvice(_ error: any Error) -> String {
        if let api = (error as? NATSError)?.jetStreamError, api.errorCode != notEnabled, api.errorCode != notEnabledForAccount {
            return "JetStream refused the controller's stream backend_status or its KV buckets (plane_backends, plane_locks, plane_leases): \(api.errorDescription.prefix(200)) (err_code \(api.errorCode)); see docs/operations.md for what Plane stores, and remove or fix what is in the way."
        }
        return "The controller needs JetStream (stream backend_status, KV buckets plane_backends, plane_locks and plane_leases); start nats-server with -js."
    }

    /// What the operator should look at once the wait is over.
    func advice(replicas: Int, waited: Duration) -> String {
        let seconds = waited.components.seconds
        switch self {
        case .notAnswering:
            return "JetStream did not answer the controller for \(seconds) s; check that nats-server is not overloaded and, in a NATS cluster, that JetStream has a leader ([scheduler] jetstream_wait_secs sets this wait)."
        case .noLeader:
            return "JetStream had no leader for \(seconds) s; in a NATS cluster a majority of the servers must run with JetStream and reach each other (see nats-server's log; [scheduler] jetstream_wait_secs sets this wait)."
        case .cannotPlace:
            return "JetStream could not place the controller's streams with replicas = \(replicas) for \(seconds) s; the NATS cluster needs at least \(replicas) JetStream servers (or lower [scheduler] replicas)."
        }
    }
}
