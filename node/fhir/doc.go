// Package fhir provides FHIR R4 validation, patient-compartment assignment and
// Bundle export for record import.
//
// A [Validator] compiles the official FHIR R4 JSON Schema (embedded, see
// schema/README.md) once. [Validator.Parse] accepts one resource or a Bundle,
// validates every resource against its own schema definition
// (#/definitions/<resourceType>), checks references and computes which
// patients each resource belongs to, using the Patient compartment definition.
// It is all-or-nothing: on any problem it returns an [*Error] that names the
// resource and the field, and no resources.
//
// [AssignPatient] confirms that a set of parsed resources all belong to one
// patient, and [ExportBundle] turns resources back into a Bundle.
//
// The package does no I/O beyond reading its embedded files, holds no global
// mutable state and is safe for concurrent use once a Validator is built.
package fhir
