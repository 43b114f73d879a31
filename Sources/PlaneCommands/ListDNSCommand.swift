import ArgumentParser
import Foundation
import NATS
import PlaneCore
import PlaneMessaging

/// `plane list-dns`: the DNS records the controllers serve, from the `dns_record` stream
/// (what drones published in the last 60 s; v0.3.10 panicked here).
struct ListDNSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list-dns",
        abstract: "List the DNS records drones published in the last minute (what the controllers serve).",
        discussion: "Exit status: 0 (also when there is none), 3 no NATS or no dns_record stream (no controller with [dns] ever ran)."
    )

    @Option(name: .long, help: "Only records of this cluster.") var cluster: String?
    @OptionGroup var options: ClusterOptions

    struct Key: Hashable, Comparable {
        var name: String
        var kind: String
        static func < (l: Key, r: Key) -> Bool { (l.name, l.kind) < (r.name, r.kind) }
    }

    func run() async throws {
        let messenger = await options.connect()
        let consumer: OrderedConsumer
        do {
            consumer = try await messenger.jetStream.orderedConsumer(stream: "dns_record")
        } catch {
            CLIError.exit("Cannot read the dns_record stream: \(error). A controller with [dns] creates it; is one running on this NATS?", code: 3)
        }
        // The last value per name and kind (A records replace each other; TXT values add up).
        var records: [Key: [String]] = [:]
        if consumer.initialPending > 0 {
            do {
                for try await message in consumer {
                    if let record = try? WireDecoder().decode(SetDnsRecord.self, from: message.payload), cluster == nil || record.cluster.rawValue == cluster {
                        let key = Key(name: "\(record.name).\(record.cluster)", kind: record.kind.rawValue)
                        if record.kind == .a { records[key] = [record.value] } else if !(records[key]?.contains(record.value) ?? false) { records[key, default: []].append(record.value) }
                    }
                    if message.pending == 0 { break }
                }
            } catch {
                CLIError.exit("Reading the dns_record stream failed: \(error)", code: 3)
            }
        }
        consumer.stop()
        await messenger.client.close()
        for key in records.keys.sorted() {
            for value in records[key] ?? [] {
                if options.json { options.printJSON(["name": key.name, "type": key.kind, "value": value]) } else { print("\(key.name)\t\(key.kind)\t\(value)") }
            }
        }
        if records.isEmpty && !options.json { print("No DNS records in the last minute.") }
    }
}
