/// Checks a JSON value against a JSON Schema — the subset runtime plugins use to describe
/// their per-spawn `options`: `type` (one or a list), `enum`, `const`, `properties`,
/// `required`, `additionalProperties` (false or a schema), `items`, `minItems`,
/// `maxItems`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minLength`,
/// `maxLength`, `pattern`, `allOf`, `anyOf`, `oneOf`, `not`, and the boolean schemas
/// `true`/`false`. Other keywords are ignored, as JSON Schema prescribes for unknown ones.
/// Pure: no I/O, no `$ref`.
public struct JSONSchemaValidator: Sendable {
    public let schema: JSONValue

    public init(schema: JSONValue) {
        self.schema = schema
    }

    /// The problems of `value` (empty: valid), each naming where it is (`options.cpus`).
    public func problems(of value: JSONValue, at path: String = "options") -> [String] {
        var found: [String] = []
        check(value, against: schema, at: path, into: &found)
        return found
    }

    func check(_ value: JSONValue, against schema: JSONValue, at path: String, into problems: inout [String]) {
        if let allowed = schema.boolValue {
            if !allowed { problems.append("\(path) is not allowed") }
            return
        }
        guard let rules = schema.objectValue else { return }
        if let type = rules["type"] {
            let names = type.arrayValue?.compactMap(\.stringValue) ?? type.stringValue.map { [$0] } ?? []
            if !names.isEmpty, !names.contains(where: { Self.matches(value, type: $0) }) {
                problems.append("\(path) must be \(names.map { Self.article($0) }.joined(separator: " or ")), not \(Self.describe(value))")
                return
            }
        }
        if let options = rules["enum"]?.arrayValue, !options.contains(where: { $0.isEquivalent(to: value) }) {
            problems.append("\(path) must be one of \(options.map(JSONWriter.string).joined(separator: ", "))")
        }
        if let constant = rules["const"], !constant.isEquivalent(to: value) {
            problems.append("\(path) must be \(JSONWriter.string(constant))")
        }
        switch value {
        case .object(let object): checkObject(object, rules, path, &problems)
        case .array(let items): checkArray(items, rules, path, &problems)
        case .number: checkNumber(value.doubleValue ?? 0, rules, path, &problems)
        case .string(let text): checkString(text, rules, path, &problems)
        default: break
        }
        if let all = rules["allOf"]?.arrayValue {
            for sub in all { check(value, against: sub, at: path, into: &problems) }
        }
        if let any = rules["anyOf"]?.arrayValue, !any.contains(where: { passes(value, $0, path) }) {
            problems.append("\(path) matches none of the allowed forms (anyOf)")
        }
        if let one = rules["oneOf"]?.arrayValue, one.filter({ passes(value, $0, path) }).count != 1 {
            problems.append("\(path) must match exactly one of the allowed forms (oneOf)")
        }
        if let not = rules["not"], passes(value, not, path) {
            problems.append("\(path) has a form that is not allowed (not)")
        }
    }

    func passes(_ value: JSONValue, _ schema: JSONValue, _ path: String) -> Bool {
        var found: [String] = []
        check(value, against: schema, at: path, into: &found)
        return found.isEmpty
    }

    func checkObject(_ object: JSONObject, _ rules: JSONObject, _ path: String, _ problems: inout [String]) {
        let properties = rules["properties"]?.objectValue ?? JSONObject()
        for required in rules["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where object[required] == nil {
            problems.append("\(path).\(required) is required")
        }
        for member in object.members {
            if let sub = properties[member.key] {
                check(member.value, against: sub, at: "\(path).\(member.key)", into: &problems)
            } else if let additional = rules["additionalProperties"] {
                if additional.boolValue == false {
                    let known = properties.keys.sorted()
                    problems.append("\(path).\(member.key) is not a known option\(known.isEmpty ? " (none are accepted)" : "; known: \(known.joined(separator: ", "))")")
                } else {
                    check(member.value, against: additional, at: "\(path).\(member.key)", into: &problems)
                }
            }
        }
    }

    func checkArray(_ items: [JSONValue], _ rules: JSONObject, _ path: String, _ problems: inout [String]) {
        if let minimum = rules["minItems"]?.int64Value, items.count < minimum { problems.append("\(path) needs at least \(minimum) items") }
        if let maximum = rules["maxItems"]?.int64Value, items.count > maximum { problems.append("\(path) takes at most \(maximum) items") }
        if let sub = rules["items"] {
            for (index, item) in items.enumerated() { check(item, against: sub, at: "\(path)[\(index)]", into: &problems) }
        }
    }

    func checkNumber(_ number: Double, _ rules: JSONObject, _ path: String, _ problems: inout [String]) {
        if let minimum = rules["minimum"]?.doubleValue, number < minimum { problems.append("\(path) must be at least \(JSONWriter.string(rules["minimum"]!))") }
        if let maximum = rules["maximum"]?.doubleValue, number > maximum { problems.append("\(path) must be at most \(JSONWriter.string(rules["maximum"]!))") }
        if let minimum = rules["exclusiveMinimum"]?.doubleValue, number <= minimum { problems.append("\(path) must be more than \(JSONWriter.string(rules["exclusiveMinimum"]!))") }
        if let maximum = rules["exclusiveMaximum"]?.doubleValue, number >= maximum { problems.append("\(path) must be less than \(JSONWriter.string(rules["exclusiveMaximum"]!))") }
    }

    func checkString(_ text: String, _ rules: JSONObject, _ path: String, _ problems: inout [String]) {
        if let minimum = rules["minLength"]?.int64Value, text.count < minimum { problems.append("\(path) needs at least \(minimum) characters") }
        if let maximum = rules["maxLength"]?.int64Value, text.count > maximum { problems.append("\(path) takes at most \(maximum) characters") }
        if let pattern = rules["pattern"]?.stringValue {
            if let regex = try? Regex(pattern) {
                if (try? regex.firstMatch(in: text)) == nil { problems.append("\(path) must match \(pattern)") }
            } else {
                problems.append("\(path): the schema's pattern \(pattern) is not a regular expression")
            }
        }
    }

    static func matches(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object), ("number", .number): true
        case ("integer", .number(let text)): Int64(text) != nil || (Double(text).map { $0.rounded() == $0 } ?? false)
        default: false
        }
    }

    static func article(_ type: String) -> String {
        switch type {
        case "integer", "array", "object": "an \(type)"
        case "null": "null"
        default: "a \(type)"
        }
    }

    static func describe(_ value: JSONValue) -> String {
        switch value {
        case .number(let text): Int64(text) != nil ? "the integer \(text)" : "the number \(text)"
        case .string(let text): "the string \"\(text)\""
        default: value.kindName
        }
    }
}
