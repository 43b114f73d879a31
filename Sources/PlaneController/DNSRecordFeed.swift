import Logging
import NATS
import PlaneCore
import PlaneDNS
import PlaneMessaging

/// Feeds the DNS record store: drones' `cluster.*.dns.*` records (every controller sees
/// all of them), a replay of the last 60 s from the `dns_record` stream at start (so a
/// restarted controller answers at once), and `acme.set_dns_record`, which v0.3.10 left
/// unanswered: it becomes a TXT record for `_acme-challenge.{cluster}`.
public struct DNSRecordFeed: Sendable {
    public static let streamName = "dns_record"

    let messenger: PlaneMessenger
    let store: DNSRecordStore
    let logger: Logger

    public init(messenger: PlaneMessenger, store: DNSRecordStore, logger: Logger) {
        self.messenger = messenger
        self.store = store
        self.logger = logger
    }

    /// v0.3.10's `dns_record` stream: subjects `cluster.*.dns.*`, 60 s max age.
    public static var streamConfiguration: StreamConfiguration {
        var config = StreamConfiguration(name: streamName, subjects: [PlaneSubjects.dnsAll.pattern])
        config.retention = .limits
        config.storage = .file
        config.discard = .old
        config.maxAge = 60 * 1_000_000_000
        return config
    }

    public func apply(_ record: SetDnsRecord, age: Duration = .zero) {
        do {
            let zone = try DNSName(record.cluster.rawValue)
            switch record.kind {
            case .a: try store.setAddress(record.value, name: record.name, zone: zone, age: age)
            case .txt: try store.addText(record.value, name: record.name, zone: zone, age: age)
            }
        } catch where error.code == .limitExceeded {
            if let limit = error.limit, let hits = LimitCounters.shared.record(limit) {
                logger.warning("limit.exceeded", metadata: ["plane.limit": "\(limit)", "plane.limit_hits": "\(hits)", "plane.cluster": "\(record.cluster)",
                                                           "dns.name": "\(record.name.prefix(80))", "error": "\(error.message)"])
            }
        } catch {
            logger.warning("dns.record_rejected", metadata: ["plane.cluster": "\(record.cluster)", "dns.name": "\(record.name)", "error": "\(error)"])
        }
    }

    /// Replays what the stream holds, then returns.
    public func replay() async {
        do {
            _ = try await messenger.jetStream.ensureStream(Self.streamConfiguration)
            let consumer = try await messenger.jetStream.orderedConsumer(stream: Self.streamName)
            defer { consumer.stop() }
            guard consumer.initialPending > 0 else { return }
            var replayed = 0
            for try await message in consumer {
                if let record = try? WireDecoder().decode(SetDnsRecord.self, from: message.payload) {
                    let age = max(.zero, Timestamp.now().duration(since: Timestamp(nanosecondsSinceEpoch: message.timestampNanoseconds)))
                    apply(record, age: age)
                    replayed += 1
                }
                if message.pending == 0 { break }
            }
            logger.info("dns.replayed", metadata: ["dns.records": "\(replayed)"])
        } catch {
            logger.warning("dns.replay_failed", metadata: ["error": "\(error)"])
        }
    }

    /// Answers one `acme.set_dns_record`: the TXT value is published as a `SetDnsRecord`
    /// (so every controller and the stream get it) and stored here before answering.
    func setAcmeRecord(_ request: SetAcmeDnsRecord) async -> Bool {
        let record = SetDnsRecord(cluster: request.cluster, kind: .txt, name: "_acme-challenge", value: request.value)
        apply(record)
        do {
            try await messenger.publish(PlaneSubjects.dns(request.cluster, .txt), record)
            return true
        } catch {
            logger.warning("dns.acme_publish_failed", metadata: ["plane.cluster": "\(request.cluster)", "error": "\(error)"])
            return false
        }
    }
}
