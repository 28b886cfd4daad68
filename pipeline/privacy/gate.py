"""De-identification gate: refuse an extract that carries direct identifiers,
before anything from it is stored.

The gate reads **every value** of every text column (extra columns included),
inside DuckDB, in one pass per table: each column is tested against one RE2
pattern (DuckDB's ``regexp_matches`` is RE2: a DFA, no backtracking, time
linear in the input -- a 1 MB field is judged in milliseconds) that is the
union of every rule applying to it. Only a column with candidate values gets a
second, per-rule query, run over its candidate rows alone. Column *names* are
judged too (in the major European languages), and a CSV whose first row is data
rather than a header is refused without printing that row.

A refusal is ``PrivacyError`` (exit code 3): one line naming file, column, rule
and number of rows -- never a value, and never a column name that itself looks
like a value. What is looked for, and why the thresholds, is in
``docs/privacy.md`` ("Identifier gate").

>>> persons = pd.DataFrame({"person_id": ["P000001", "P000002"], "birth_year": ["1970", "1982"],
...                         "sex": ["F", "M"], "region": ["North East", "Yorkshire and The Humber"]})
>>> check_tables({"persons": persons})
[]
>>> persons["contact"] = ["ann@example.org", ""]
>>> [str(f) for f in check_tables({"persons": persons})]
["persons, column 'contact': e-mail address (rule gate.email), 1 row"]
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import duckdb
import pandas as pd

from pipeline.contract import TABLES
from pipeline.errors import PrivacyError


@dataclass(frozen=True)
class Finding:
    """One column that carries (or announces) a direct identifier. Holds no value."""

    table: str  # file name when known (persons.csv), else table name
    column: str  # printable label: the column's name, or "column 3" when the name itself looks like a value
    kind: str
    rule: str  # gate.* rule id
    rows: int | None  # rows matching (None: judged by the column's name or type)

    def __str__(self) -> str:
        how = "by its name" if self.rows is None else f"{self.rows:,} row{'s' if self.rows != 1 else ''}"
        return f"{self.table}, column {self.column!r}: {self.kind} (rule {self.rule}), {how}"


# ================================================================ column names

def normalise_name(name: str) -> str:
    """A column name as lower-case ASCII tokens joined by "_" (accents dropped,
    camelCase split, punctuation turned into separators).

    >>> [normalise_name(n) for n in ("Prénom", "DateOfBirth", "D.O.B.", "fecha_nacimiento ", "NHS-No")]
    ['prenom', 'date_of_birth', 'd_o_b', 'fecha_nacimiento', 'nhs_no']
    """
    text = unicodedata.normalize("NFKD", str(name))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).replace("ß", "ss")
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# Kind -> (rule id, pattern over the normalised name). Tokens are matched whole
# (between "_" or the ends); the same patterns are also tried against the name
# with every separator removed ("d_o_b" -> "dob", "do_b" -> "dob").
_GIVEN = r"(first|last|given|family|sur|fore|middle|maiden|full|patient|person|client|member|user|prescriber|doctor" \
         r"|gp|physician|clinician|pharmacist|nurse|contact|kin|guardian|mother|father|birth|display)"
_NAME_RULES: tuple[tuple[str, str, str], ...] = (
    ("date of birth", "gate.name.birth_date",
     r"dob|d_o_b|date_of_birth|birth_?date|birth_?datetime|birth_?day|birthday|day_of_birth|date_naissance"
     r"|date_de_naissance|datenaissance|ddn|jour_naissance|geburtsdatum|geburtstag|geb_datum|gebdat|fecha_(de_)?nacimiento"
     r"|f_nac|fechanacimiento|data_(di_)?nascita|datanascita|data_(de_)?nascimento|datanascimento|geboortedatum"
     r"|geb_datum|fodelsedatum|fodselsdato|syntymaaika|data_urodzenia|datum_narozeni"),
    ("place of birth", "gate.name.birth_place",
     r"(place|city|town)_of_birth|birth_?(place|city|town)|lieu_(de_)?naissance|geburtsort|lugar_(de_)?nacimiento"
     r"|luogo_(di_)?nascita|geboorteplaats"),
    ("person name", "gate.name.person_name",
     rf"{_GIVEN}_?names?|^names?$|^nm$|fname|lname|mname|initials|forenames?|surnames?|firstname|lastname|givenname"
     r"|familyname|^nom$|nom_(de_)?(famille|naissance|usage|patient|jeune_fille|complet)|^noms?_|prenoms?|vorname"
     r"|nachname|familienname|geburtsname|rufname|^nombre$|nombre_(completo|paciente|pila)|apellidos?|^nome$"
     r"|nome_(completo|paziente|proprio)|cognome|sobrenome|^apelido$|voornaam|achternaam|^naam$|roepnaam|tussenvoegsel"
     r"|^imie$|nazwisko|fornavn|efternavn|etternavn|fornamn|efternamn|etunimi|sukunimi"),
    ("e-mail address", "gate.name.email",
     r"e_?mail(_?(address|adresse|addr))?|^mail$|mail_?address|courriel|correo(_electronico)?|posta_elettronica"),
    ("phone number", "gate.name.phone",
     r"(tele)?phone(_?(no|num|number|nr))?|mobile(_?(no|num|number|phone))?|cell_?phone|^cell$|fax|^tel$|tel_?(no|nr)"
     r"|telefon[oe]?|telefoon|telefonnummer|numero_(de_)?telephone|portable|^handy$|movil|cellulare|^gsm$"),
    ("social security number", "gate.name.ssn",
     r"ssn|social_?security(_?(no|number|num))?|sozialversicherungs?_?(nr|nummer)|svnr|^nir$|num(ero)?_secu|insee"
     r"|securite_sociale|seguridad_social|nuss|codice_fiscale|^cf$|^bsn$|burgerservicenummer|sofinummer"
     r"|personnummer|^cpr$|pesel|^dni$|^nie$|^nif$|tax_?id|^tin$|^steuer_?id$"),
    ("NHS number", "gate.name.nhs", r"nhs(_?(no|num|number|nr|id))?|chi_?(no|number)|hcn|health_?care_?number"),
    ("national identifier", "gate.name.national_id",
     r"national_?id|national_?insurance(_?number)?|ni_?number|nino|passport(_?(no|number|nr))?|ausweis"
     r"|driver_?s?_?licen[cs]e(_?(no|number))?|mrn|medical_?record(_?(no|number|num))?|hospital_?(no|number)"
     r"|medicare(_?(no|number))?|medicaid(_?(no|number))?|insurance_?(no|number)|versicherten_?nummer|iban"
     r"|account_?(no|number)|credit_?card|card_?number|carte_vitale|tessera_sanitaria"),
    ("network address", "gate.name.network", r"ip|ip_?address|ipv[46]|mac_?address|url|website|homepage|web_?site"),
    ("address", "gate.name.address",
     r"address|addr|street|address_line_?\d?|house_?(no|number)|adresse|anschrift|strasse|hausnummer|direccion"
     r"|domicilio|indirizzo|morada|endereco|straat|huisnummer|^adres$|woonplaats|calle"),
    ("postcode or ZIP code", "gate.name.postcode",
     r"post_?code|postal_?code|zip|zip_?code|zipcode|code_postal|codepostal|plz|postleitzahl|codigo_postal|^cap$"
     r"|codice_postale|postnummer|^cp$"),
    ("geolocation", "gate.name.geolocation", r"latitude|longitude|^lat$|^lng$|^lon$|^long$|gps|geo_?location|coordinates"),
    ("free text", "gate.name.free_text",
     r"notes?|comments?|free_?text|narrative|remarks?|clinical_notes?|bemerkung(en)?|commentaires?|observaciones"
     r"|^nota$|opmerking(en)?|anmerkung(en)?"),
)
_NAME_PATTERNS = [(kind, rule, re.compile(rf"(^|_)({pattern})(_|$)")) for kind, rule, pattern in _NAME_RULES]
# Coarse birth information is part of the contract (birth_year) and harmless
# beside it: a year or month of birth, a country of birth.
_COARSE_BIRTH = re.compile(r"(^|_)(year|yr|yob|annee|jahr|ano|anno|jaar|month|mois|monat|mes|mese|maand|country|pays"
                           r"|land|pais|paese)(_|$)|jahr|yob")


def identifier_kind_of_name(name: str) -> tuple[str, str] | None:
    """(kind, rule) a column name announces, or None.

    >>> [identifier_kind_of_name(c)[0] for c in ("DoB", "D.O.B.", "Geburtsdatum", "date_naissance", "NOM", "Prénom",
    ...                                          "fname", "Nachname", "apellido", "cognome", "achternaam", "patientEmail")]
    ['date of birth', 'date of birth', 'date of birth', 'date of birth', 'person name', 'person name', 'person name', 'person name', 'person name', 'person name', 'person name', 'e-mail address']
    >>> [identifier_kind_of_name(c) for c in ("birth_year", "drug_name", "prescriber_id", "nominal_dose", "observation_end")]
    [None, None, None, None, None]
    """
    normalised = normalise_name(name)
    if not normalised:
        return None
    compact = normalised.replace("_", "")
    for kind, rule, pattern in _NAME_PATTERNS:
        if pattern.search(normalised) or pattern.search(compact):
            if rule == "gate.name.birth_date" and _COARSE_BIRTH.search(normalised):
                continue
            return kind, rule
    return None


# ================================================================ values (RE2 patterns run by DuckDB)

# Any space: ASCII white space, every Unicode space separator (NBSP, thin,
# narrow NBSP, ideographic...) and the zero-width characters that hide in
# copy-pasted text. Patterns use it wherever a space may stand.
SP = r"[\t\x{0B}\f\r \p{Z}\x{200B}-\x{200D}\x{2060}\x{FEFF}]"  # not \n: it separates values in a row scan
# Letters as explicit ranges (ASCII, Latin-1, Latin Extended-A): \p{L} under a
# counted repetition makes RE2's automaton large and its scan slow.
_L = r"A-Za-z\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{17F}"
_LU = r"A-Z\x{C0}-\x{D6}\x{D8}-\x{DE}\x{100}-\x{17F}"
L = f"[{_L}]"
_SEP = rf"(?:{SP}+|{SP}*[.-]{SP}*)"  # between digit groups

EMAIL = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
URL = r"(?i)(\b(https?|ftp|sftp)://[^\s/]|(^|[^\w@.])www\.[a-z0-9-]+\.[a-z]{2,})"
_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = rf"(^|[^\d.]){_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}([^\d.]|$)"
_H = "[0-9A-Fa-f]{1,4}"
IPV6 = (rf"(^|[^0-9A-Fa-f:])(({_H}:){{7}}{_H}|({_H}:){{1,6}}(:{_H}){{1,6}}|({_H}:){{2,7}}:|::({_H}:){{0,6}}{_H})"
        r"([^0-9A-Fa-f:]|$)")
SSN = r"(^|[^\d-])(\d{3})-(\d{2})-(\d{4})([^\d-]|$)"
SSN_LABELLED = (rf"(?i)(^|[^a-z])(ssn|social{SP}*[_-]?{SP}*security({SP}*[_-]?{SP}*(no|number|num|#))?)[\s\p{{Z}}.:#-]*"
                rf"\d{{3}}{_SEP}?\d{{2}}{_SEP}?\d{{4}}(\D|$)")
NHS_FORMATTED = rf"(^|\D)(\d{{3}}{_SEP}\d{{3}}{_SEP}\d{{4}})(\D|$)"
NHS_LABELLED = (rf"(?i)(^|[^a-z])(nhs|chi)({SP}*[_-]?{SP}*(no|number|num|nr|#))?[\s\p{{Z}}.:#-]*"
                rf"\d{{3}}{_SEP}?\d{{3}}{_SEP}?\d{{4}}(\D|$)")
NHS_BARE = r"^\d{10}$"
# Phone numbers with their usual punctuation: UK trunk 0 ("07700 900123",
# "(020) 7946 0958"), international "+44 7700 900123", North American
# "(555) 123-4567" / "555-123-4567" / "1-800-555-0199". A digit count of 9-15
# is checked on the candidate (dates and decimals have fewer, or other shapes).
_PB = r"(^|[^\w.+/-])"
_PE = r"([^\w./-]|$)"
PHONE = (rf"{_PB}(\(0[1-9]\d{{0,4}}\)|0[1-9]\d{{0,4}})({_SEP}?\d{{2,6}}){{1,4}}{_PE}"
         rf"|{_PB}\+[1-9]\d{{0,2}}({_SEP}?(\(0\))?{_SEP}?\(?\d{{1,5}}\)?){{2,6}}{_PE}"
         rf"|{_PB}(1{_SEP})?(\(\d{{3}}\){SP}*|\d{{3}}{_SEP})\d{{3}}{_SEP}\d{{4}}{_PE}")
PHONE_LABELLED = (r"(?i)(^|[^a-z])(tel|phone|telephone|mobile|mob|fax|cell|handy|portable|t[ée]l[ée]fono?)"
                  r"[\s\p{Z}.:#-]*\+?\(?\d[\d\s\p{Z}().-]{7,}\d")
PHONE_BARE = r"^0[1-9]\d{8,9}$"  # judged against the column's digit-only values
# Full UK postcode (outward + inward code). Outward-only codes ("LS1") are coarse and pass.
_OUTWARD = r"[A-PR-UWYZ][A-HK-Y]?\d[A-HJKPSTUW\d]?"
_INWARD = r"\d[ABD-HJLNP-UW-Z]{2}"
POSTCODE = rf"(?i)(^|[^A-Za-z0-9-])(GIR{SP}*0AA|{_OUTWARD}{SP}+{_INWARD})([^A-Za-z0-9-]|$)"
POSTCODE_AFTER_TOWN = rf"{L}{{2}}[,]?{SP}+{_OUTWARD}{_INWARD}({SP}*$|[,;])"
POSTCODE_COMPACT = rf"(?i)^{SP}*{_OUTWARD}{_INWARD}{SP}*$"  # judged against pseudonym-shaped values
_STATES = r"(A[LKZR]|C[AOT]|D[EC]|FL|GA|HI|I[DLNA]|K[SY]|LA|M[EDAINSOT]|N[EVHJMYCD]|O[HKR]|PA|RI|S[CD]|T[NX]|UT|V[TA]|W[AVIY])"
ZIP_STATE = rf"(^|[^A-Za-z]){_STATES},?{SP}+\d{{5}}(-\d{{4}})?([^\d-]|$)"
ZIP_PLUS4 = r"(^|[^\d-])\d{5}-\d{4}([^\d-]|$)"
ZIP_IN_REGION = r"(^|\D)\d{5}(\D|$)"
ZIP_BARE = r"^\d{5}(-\d{4})?$"
_STREET_TYPES = (r"street|st|road|rd|avenue|ave|lane|ln|drive|close|court|ct|boulevard|blvd|way|place|terrace|crescent"
                 r"|square|sq|highway|hwy|parkway|pkwy|gardens|grove|mews|row|walk")
STREET = (rf"(?i)(^|[^\w])\d{{1,5}}[a-z]?,?{SP}+([a-z'.-]+{SP}+){{1,4}}({_STREET_TYPES})\b"
          rf"|(?i)\b(rue|calle|avenida|viale|piazza|plaza|boulevard){SP}+[^0-9,;\n]+{SP}\d{{1,4}}[a-z]?\b"
          rf"|(?i)[a-z](stra(ss|ß)e|str\.|straat|weg|gasse|laan|plein|gracht){SP}*\d{{1,4}}[a-z]?\b")
FREE_TEXT = rf"({L}{{2,}}[,;:.!?'\")-]?{SP}+[\"(]?){{5}}{L}{{2}}"  # six words apart by spaces  # and at least 40 characters: a sentence
FULL_DATE = (rf"^{SP}*(\d{{4}}[-/.]\d{{1,2}}[-/.]\d{{1,2}}|\d{{1,2}}[-/.]\d{{1,2}}[-/.]\d{{2,4}}|\d{{8}}"
             rf"|\d{{1,2}}\.?{SP}+{L}{{3,9}}\.?{SP}+\d{{4}}|{L}{{3,9}}\.?{SP}+\d{{1,2}},?{SP}+\d{{4}})([T ].*)?{SP}*$")

# Person names by value.
_WORD = rf"[{_LU}][{_L}'-]*{L}"
_INITIAL = rf"[{_LU}]\.?"
NAME_COMMA = rf"^{SP}*{_WORD}({SP}*-{SP}*{_WORD})?,{SP}*({_WORD}|{_INITIAL})({SP}+({_WORD}|{_INITIAL}))?{SP}*$"
NAME_TITLED = (rf"^{SP}*(?i:mr|mrs|ms|miss|mx|dr|prof|sir|dame|herr|frau|mme|mlle|sr|sra|sig|sig\.ra|dhr|mevr)\.?{SP}+"
               rf"({_WORD}|{_INITIAL})({SP}+{_WORD}){{0,2}}{SP}*$")
# Common given names (England and Wales, France, Germany, Spain, Italy, the
# Netherlands). Words that are also ordinary words or place names (Grace,
# Hope, May, Mark, Rose, Victoria, Milton...) are left out.
GIVEN_NAMES = (
    "James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel Matthew Anthony Donald"
    " Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason Jeffrey Ryan Jacob Gary Nicholas"
    " Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander Patrick Raymond Dennis Jerry"
    " Tyler Aaron Jose Adam Nathan Henry Douglas Zachary Peter Kyle Walter Ethan Jeremy Harold Keith Christian Roger"
    " Noah Gerald Carl Terry Sean Austin Arthur Lawrence Jesse Dylan Bryan Joe Jordan Billy Bruce Albert Willie Gabriel"
    " Logan Alan Juan Wayne Roy Ralph Randy Eugene Vincent Russell Elijah Louis Bobby Philip Johnny Oliver Harry Jack"
    " Charlie Freddie Alfie Archie Leo Oscar Theo Mohammed Muhammad Ahmed Ali Liam Lucas Hugo Louis Jules Gabriel Arthur"
    " Nathan Enzo Mathis Pierre Jean Michel Philippe Alain Nicolas Christophe Laurent Julien Maximilian Lukas Felix Jonas"
    " Paul Elias Finn Leon Hans Klaus Wolfgang Jurgen Dieter Stefan Andreas Uwe Frank Markus Sebastian Tobias Javier"
    " Carlos Manuel Antonio Francisco Miguel Alejandro Pablo Sergio Jorge Luis Alberto Fernando Diego Giuseppe Giovanni"
    " Marco Francesco Alessandro Andrea Matteo Lorenzo Luca Stefano Roberto Massimo Daan Sem Bram Lars Jan Pieter Willem"
    " Hendrik Johannes Cornelis Sven Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Nancy Lisa"
    " Betty Margaret Sandra Ashley Kimberly Emily Donna Michelle Carol Amanda Dorothy Melissa Deborah Stephanie Rebecca"
    " Sharon Laura Cynthia Kathleen Amy Angela Shirley Anna Brenda Pamela Emma Nicole Helen Samantha Katherine Christine"
    " Debra Rachel Carolyn Janet Catherine Maria Heather Diane Julie Joyce Kelly Christina Joan Evelyn Lauren Judith"
    " Megan Cheryl Andrea Hannah Martha Jacqueline Gloria Teresa Ann Anne Sara Madison Frances Kathryn Janice Jean Abigail"
    " Alice Julia Judy Sophia Sophie Denise Amber Doris Marilyn Danielle Beverly Isabella Theresa Diana Natalie Brittany"
    " Charlotte Marie Kayla Alexis Lori Olivia Amelia Isla Ava Mia Ella Poppy Evie Freya Florence Jane Wendy Lucy Chloe"
    " Jade Zoe Claire Louise Ruth Gillian Pauline Nathalie Isabelle Sylvie Catherine Martine Francoise Nathalie Camille"
    " Manon Ines Lea Chantal Monique Ursula Sabine Petra Monika Ingrid Birgit Gabriele Susanne Claudia Katharina Lena"
    " Carmen Dolores Pilar Josefa Isabel Lucia Paula Elena Marta Cristina Giulia Francesca Chiara Valentina Federica"
    " Alessia Martina Silvia Elisa Sanne Femke Anouk Fleur Lotte Ingrid Astrid Mohamed Fatima Aisha Priya Raj Wei Li"
)
_GIVEN_ALT = "|".join(sorted({g for g in GIVEN_NAMES.split()} | {g.upper() for g in GIVEN_NAMES.split()}))
NAME_GIVEN = rf"^{SP}*({_GIVEN_ALT}){SP}+(({_INITIAL}|{_WORD}){SP}+)?{_WORD}{SP}*$"
# Second words that make "Given Word" a place or a disease, not a person.
PLACE_WORD = (r"(?i)\b(county|city|town|park|street|road|island|islands|valley|hill|hills|bay|lake|river|hospital"
              r"|syndrome|disease|college|university|school|parish|district|borough|health|trust|centre|center|bridge)\b")
NAME_GENERIC = rf"^{SP}*{_WORD}{SP}+({_INITIAL}{SP}+)?{_WORD}({SP}+{_WORD})?{SP}*$"
PSEUDONYM_SHAPED = r"^[^\s\p{Z},;]*\d[^\s\p{Z},;]*$"  # one token holding a digit: P000123, RX01, 3f2a..., 9434765919
DIGITS_ONLY = r"^\+?\d+$"


def _nhs_check_sql(digits: str) -> str:
    """SQL: ``digits`` (10 digits) passes the NHS mod-11 check (weights 10..2; 11 -> 0; 10 is never valid)."""
    weighted = " + ".join(f"{w} * try_cast(substr({digits}, {i}, 1) as integer)" for i, w in enumerate(range(10, 1, -1), 1))
    return (f"(length({digits}) = 10 and (11 - ({weighted}) % 11) % 11 = try_cast(substr({digits}, 10, 1) as integer))")


def _digits(expression: str) -> str:
    return f"regexp_replace({expression}, '[^0-9]', '', 'g')"


@dataclass(frozen=True)
class _Rule:
    rule: str
    kind: str
    pattern: str
    # SQL over the candidate value ``{v}`` confirming it (checksum, digit count), or "".
    confirm: str = ""
    # "any": one row is enough. Otherwise judged in ``_judge`` against the column.
    judged: str = "any"


_RULES: dict[str, _Rule] = {r.rule: r for r in (
    _Rule("gate.email", "e-mail address", EMAIL),
    _Rule("gate.url", "web address (URL)", URL),
    _Rule("gate.ipv4", "IP address", IPV4),
    _Rule("gate.ipv6", "IP address", IPV6),
    _Rule("gate.ssn", "social security number", SSN,
          confirm="(regexp_extract({v}, '" + SSN + "', 2) not in ('000', '666') and regexp_extract({v}, '" + SSN
                  + "', 3) <> '00' and regexp_extract({v}, '" + SSN + "', 4) <> '0000')"),
    _Rule("gate.ssn_labelled", "social security number", SSN_LABELLED),
    _Rule("gate.nhs_labelled", "NHS number", NHS_LABELLED),
    _Rule("gate.nhs", "NHS number", NHS_FORMATTED,
          confirm=_nhs_check_sql(_digits("regexp_extract({v}, '" + NHS_FORMATTED.replace("'", "''") + "', 2)"))),
    _Rule("gate.nhs_bare", "NHS number", NHS_BARE, confirm=_nhs_check_sql("{v}"), judged="digits"),
    _Rule("gate.phone_labelled", "phone number", PHONE_LABELLED),
    _Rule("gate.phone", "phone number", PHONE,
          confirm="length(" + _digits("regexp_extract({v}, '" + PHONE + "', 0)") + ") between 9 and 15"),
    _Rule("gate.phone_bare", "phone number", PHONE_BARE, judged="digits"),
    _Rule("gate.postcode", "full UK postcode", POSTCODE),
    _Rule("gate.postcode_town", "full UK postcode", POSTCODE_AFTER_TOWN),
    _Rule("gate.postcode_compact", "full UK postcode", POSTCODE_COMPACT, judged="shaped"),
    _Rule("gate.zip_state", "US ZIP code", ZIP_STATE),
    _Rule("gate.zip_plus4", "US ZIP code", ZIP_PLUS4),
    _Rule("gate.zip_region", "US ZIP code", ZIP_IN_REGION),  # area-named columns only
    _Rule("gate.zip", "US ZIP code", ZIP_BARE, judged="half"),  # other non-id, non-numeric columns
    _Rule("gate.street", "street address", STREET),
    _Rule("gate.free_text", "free text", FREE_TEXT, confirm="length({v}) >= 40"),
    _Rule("gate.birth_date", "date of birth", FULL_DATE),  # birth-named columns and birth_year only
    _Rule("gate.extra_dates", "full dates outside the contract (possible date of birth)", FULL_DATE, judged="half"),
    _Rule("gate.name_comma", "person name", NAME_COMMA),
    _Rule("gate.name_titled", "person name", NAME_TITLED),
    _Rule("gate.name_given", "person name", NAME_GIVEN,
          confirm="not regexp_matches({v}, '" + PLACE_WORD + "')"),
    _Rule("gate.name_in_id", "person name", NAME_GENERIC, judged="id"),
    _Rule("gate.names", "person name", NAME_GENERIC, judged="names"),
)}

# Share thresholds (docs/privacy.md, "Identifier gate").
HALF = 0.5
# A category column holds few distinct values; a column of names holds many.
MIN_DISTINCT_NAMES = 50


# ---------------------------------------------------------------- which rules apply to a column

_AREA_NAME = re.compile(r"(^|_)(region|area|location|locality|state|county|city|town|district|zone|province|place)(_|$)")
_BIRTH_NAME = re.compile(r"birth|(^|_)dob(_|$)|naissance|geburt|nacimiento|nascita|nascimento|geboorte")
_ID_NAME = re.compile(r"(^|_)(id|key|ref|code|no|nr|number|num|pseudonym)$")


def _contract_type(table: str, column: str) -> str | None:
    contract = TABLES.get(table)
    if contract and column in contract.column_names:
        return contract.column(column).duckdb_type
    return None


def _applicable(table: str, column: str, extra: bool = False) -> list[_Rule]:
    name = normalise_name(column)
    contract_type = None if extra else _contract_type(table, column)
    skip = set()
    if not _AREA_NAME.search(name):
        skip.add("gate.zip_region")
    if _ID_NAME.search(name) or contract_type in {"BIGINT", "DOUBLE", "DATE", "BOOLEAN"}:
        skip.add("gate.zip")  # five-digit numbers are ordinary in id and numeric columns
    birth_named = bool(_BIRTH_NAME.search(name))
    if not birth_named:
        skip.add("gate.birth_date")
    if not extra or birth_named:
        skip.add("gate.extra_dates")  # contract dates are dates; birth-named columns refuse one date already
    return [rule for key, rule in _RULES.items() if key not in skip]


def _union(rules: Sequence[_Rule]) -> str:
    """One RE2 pattern matching whatever any of the rules' patterns matches (a leading (?i) is scoped)."""
    parts = []
    for rule in rules:
        pattern = rule.pattern
        for alternative in _top_level_alternatives(pattern):
            if alternative.startswith("(?i)"):
                parts.append(f"(?i:{alternative[4:]})")
            else:
                parts.append(f"(?:{alternative})")
    return "|".join(dict.fromkeys(parts))


def _top_level_alternatives(pattern: str) -> list[str]:
    depth, start, out, i, in_class = 0, 0, [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "]" or pattern[i + 1:i + 3] == "^]":
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            out.append(pattern[start:i])
            start = i + 1
        i += 1
    out.append(pattern[start:])
    return out


# ---------------------------------------------------------------- printing without values

_VALUE_LIKE = [re.compile(p) for p in (
    r"@", r"^\s*[+(]?\d", r"\d{3}", r"://|^www\.", r"^\s*\S+,\s*\S+", r"^[A-Z][a-z'-]+\s+[A-Z][a-z'-]+(\s+[A-Z][a-z'-]+)?$",
    r"\s\s|\t", r"^(true|false|yes|no|null|na|none)$",
)]
# A header cell refused outright: an e-mail address, a number of 6+ digits, a URL, "Surname, Firstname".
_IDENTIFIER_AS_NAME = re.compile(r"@|\d[\d ()-]{5,}\d|://|^www\.|^\s*[A-Z][A-Za-z'-]+,\s*[A-Z][A-Za-z'-]+\s*$")
_AUTO_NAME = re.compile(r"^column\d+$|^column\d+_\d+$")


def looks_like_value(name: str) -> bool:
    """True when a header cell looks like a data value rather than a column name.

    >>> [looks_like_value(n) for n in ("person_id", "Prénom", "DoB", "ann@example.org", "943 476 5919", "1957", "Doe, Jane", "John Smith", "F")]
    [False, False, False, True, True, True, True, True, False]
    """
    text = str(name).strip()
    if len(text) > 64 or not text:
        return len(text) > 64
    return any(p.search(text) for p in _VALUE_LIKE) or bool(_FULL_DATE_PY.match(text))


_FULL_DATE_PY = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")


def printable_column(name: str, position: int) -> str:
    """The column's name, or "column <n>" when the name itself could be an identifier."""
    return f"column {position + 1}" if looks_like_value(name) or _AUTO_NAME.match(str(name)) else str(name)


def refusal_message(findings: Sequence[Finding]) -> str:
    """One line naming every file, column, rule and row count -- never a value."""
    listed = "; ".join(str(f) for f in findings)
    return (f"extract refused: direct identifiers found -- {listed}. Remove these columns (or replace their values "
            "with pseudonyms) and run again; nothing was stored.")


def refuse(findings: Sequence[Finding]) -> None:
    if findings:
        raise PrivacyError(refusal_message(findings))


# ---------------------------------------------------------------- headers (before anything is read)

_DATE_TYPES = ("DATE", "TIMESTAMP", "TIME")


def check_header(table: str, file_name: str, columns: Sequence[str], types: Sequence[str] | None = None) -> list[Finding]:
    """Findings from a file's column names and types alone; raises ``PrivacyError``
    when the first row looks like data (a CSV written without its header).

    >>> check_header("persons", "persons.csv", ["person_id", "birth_year", "sex", "DoB"])
    [Finding(table='persons.csv', column='DoB', kind='date of birth', rule='gate.name.birth_date', rows=None)]
    >>> check_header("persons", "persons.csv", ["P000001", "1957", "F", "ann@example.org"])
    Traceback (most recent call last):
    ...
    pipeline.errors.PrivacyError: persons.csv: the first row looks like data, not a header (no column of the contract is named; 3 of 4 cells look like values) -- is the header row missing? Add the header row (person_id, birth_year, sex, observation_start, observation_end) and run again; the row is not printed, and nothing was stored.
    """
    contract = TABLES.get(table)
    expected = {c.name for c in contract.columns} if contract else set()
    lowered = [str(c).strip().lower() for c in columns]
    known = [c for c in lowered if c in expected]
    value_like = sum(1 for c in columns if looks_like_value(c) or _AUTO_NAME.match(str(c)))
    required = [c.name for c in contract.required_columns] if contract else []
    missing_required = [c for c in required if c not in lowered]
    if contract and missing_required and (value_like or not known):
        listed = ", ".join(required[:5]) + (", ..." if len(required) > 5 else "")
        why = ("no column of the contract is named" if not known else
               f"{len(missing_required)} required column{'s' if len(missing_required) > 1 else ''} not named")
        raise PrivacyError(
            f"{file_name}: the first row looks like data, not a header ({why}; {value_like} of {len(columns)} cells "
            f"look like values) -- is the header row missing? Add the header row ({listed}) and run again; "
            "the row is not printed, and nothing was stored."
        )
    return name_findings(file_name, columns, types, expected, "the contract")


def name_findings(file_name: str, columns: Sequence[str], types: Sequence[str] | None, known: set[str] | frozenset[str],
                  known_as: str) -> list[Finding]:
    """Findings from column names and types alone: any name that looks like an identifier, and
    a column outside ``known`` (the contract's or the CDM's columns, ``known_as``) whose name
    announces one or whose type is a date.

    >>> [f.rule for f in name_findings("p.csv", ["person_id", "DoB", "visit", "ann@example.org"],
    ...                                ["VARCHAR", "VARCHAR", "DATE", "VARCHAR"], {"person_id"}, "the contract")]
    ['gate.name.birth_date', 'gate.name.extra_date_column', 'gate.name.value_like']
    """
    findings = []
    for position, column in enumerate(columns):
        label = printable_column(column, position)
        outside = str(column).strip().lower() not in known
        kind = identifier_kind_of_name(column) if outside else None
        if _IDENTIFIER_AS_NAME.search(str(column)):
            kind = ("a column name that looks like an identifier", "gate.name.value_like")
        elif not kind and outside and types is not None and str(types[position]).upper().startswith(_DATE_TYPES):
            kind = (f"a date-typed column outside {known_as} (possible date of birth)", "gate.name.extra_date_column")
        if kind:
            findings.append(Finding(file_name, label, kind[0], kind[1], None))
    return findings


# ---------------------------------------------------------------- values (one pass per table)


def _quote(identifier: str) -> str:
    return '"' + str(identifier).replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _value_sql(table: str, column: str, extra: bool) -> str:
    """SQL for the values of ``column`` the gate reads. A contract column typed
    number, date or boolean skips the values that are plainly of that type and
    cannot hold an identifier (a number under 9 characters or with a decimal
    point, an ISO date, true/false): anything else in such a column is read like text. (A value
    that does not cast is quarantined by ingest with its value never stored.)
    """
    text = f"cast({_quote(column)} as varchar)"
    kind = None if extra else _contract_type(table, column)
    if kind in ("BIGINT", "DOUBLE") and not _BIRTH_NAME.search(normalise_name(column)):  # 19570302 is a birth date
        # a decimal that casts (1.0714285714285714) holds no identifier; a long
        # digit string (9434765919, 07700900123) or anything that is not a number may
        return (f"(case when strlen({text}) >= 9 and not (contains({text}, '.') and "
                f"try_cast({text} as double) is not null) then {text} end)")
    if kind == "DATE":
        return f"(case when not (strlen({text}) = 10 and {text} like '____-__-__') then {text} end)"
    if kind == "BOOLEAN":
        return f"(case when strlen({text}) > 5 then {text} end)"
    return text


def scan_table(con: duckdb.DuckDBPyConnection, relation: str, table: str, file_name: str | None = None,
               columns: Sequence[str] | None = None, labels: Mapping[str, str] | None = None,
               extra: bool | Sequence[str] = False) -> list[Finding]:
    """Findings from every value of ``columns`` (default: all) of the SQL relation
    ``relation`` (a table name or a table function), judged as columns of contract
    table ``table``. ``labels`` maps a column to its printable label.

    One aggregate query reads the relation once, every column and every rule at
    once (the common case ends there). Only when it finds candidates, a second
    query says which columns, and a third per such column which rules. ``extra``:
    the columns outside the contract (``True``: all of them), where full dates are
    judged as possible birth dates and contract types do not apply.
    """
    file_name = file_name or table
    if columns is None:
        columns = con.sql(f"select * from {relation} limit 0").columns
    columns = list(columns)
    if not columns:
        return []
    labels = dict(labels or {})
    outside = set(columns) if extra is True else set(extra or ())
    is_extra = {c: c in outside for c in columns}
    applicable = {c: _applicable(table, c, is_extra[c]) for c in columns}
    # Pass 1, the common case: one RE2 scan per row over its values joined by
    # newlines, with the union of the rules of every column ((?m): ^ and $ hold
    # at each value's ends). A value matching a rule of its column matches here
    # too, so no candidate row means no finding.
    # Rules for some columns only (birth-named, area-named, extra columns) are
    # counted on those columns alone: in the row scan a full date in
    # observation_start would match birth_year's date-of-birth rule.
    specific = {"gate.birth_date", "gate.extra_dates", "gate.zip_region"}
    common = list({r.rule: r for rules in applicable.values() for r in rules if r.rule not in specific}.values())
    row_text = "concat_ws(chr(10), " + ", ".join(_value_sql(table, c, is_extra[c]) for c in columns) + ")"
    counts = [f"count_if(regexp_matches({row_text}, {_literal('(?m)' + _union(common))}))"]
    for column, rules in applicable.items():
        own = [r for r in rules if r.rule in specific]
        if own:
            counts.append(f"count_if(regexp_matches({_value_sql(table, column, is_extra[column])}, {_literal(_union(own))}))")
    if not any(con.execute(f"select {', '.join(counts)} from {relation}").fetchall()[0]):
        return []
    # Pass 2: which columns hold candidates; pass 3 (per column): which rules.
    unions = {c: _union(rules) for c, rules in applicable.items()}
    selects = []
    for i, column in enumerate(columns):
        v = _value_sql(table, column, is_extra[column])
        selects.append(f"count_if(regexp_matches({v}, {_literal(unions[column])})) as c{i}")
    counts = con.execute(f"select {', '.join(selects)} from {relation}").fetchall()[0]
    findings = []
    for i, column in enumerate(columns):
        if counts[i]:
            findings.extend(_judge_column(con, relation, table, file_name, column, labels.get(column, column),
                                          unions[column], is_extra[column]))
    return findings


def _judge_column(con, relation: str, table: str, file_name: str, column: str, label: str, union: str,
                  extra: bool) -> list[Finding]:
    rules = _applicable(table, column, extra)
    row = con.execute(f"select {', '.join(judge_parts(_value_sql(table, column, extra), union, rules))} "
                      f"from {relation}").fetchall()[0]
    return judge_counts(file_name, column, label, rules, row)


def judge_parts(v: str, union: str, rules: Sequence[_Rule]) -> list[str]:
    """The aggregates (SQL over the value expression ``v``) that ``judge_counts`` reads, in its order."""
    candidate = f"regexp_matches({v}, {_literal(union)})"
    parts = [
        f"count(nullif(trim({v}), ''))",
        f"count_if(regexp_matches({v}, {_literal(PSEUDONYM_SHAPED)}))",
        f"count_if(regexp_matches({v}, {_literal(DIGITS_ONLY)}))",
    ]
    for rule in rules:
        hit = f"regexp_matches({v}, {_literal(rule.pattern)})"
        if rule.confirm:
            hit = f"(case when {hit} then coalesce({rule.confirm.replace('{v}', v)}, false) else false end)"
        parts.append(f"count_if(case when {candidate} then {hit} else false end)")
        if rule.judged == "names":
            parts.append(f"approx_count_distinct(case when {candidate} and {hit} then {v} end)")
    return parts


def judge_counts(file_name: str, column: str, label: str, rules: Sequence[_Rule], row: Sequence) -> list[Finding]:
    """Findings for one column from the values of ``judge_parts``' aggregates (shares, thresholds)."""
    present, shaped, digits_only = row[0], row[1], row[2]
    values = iter(row[3:])
    normalised = normalise_name(column)
    id_like = bool(_ID_NAME.search(normalised)) or (present and shaped / present >= HALF)
    found: dict[str, tuple[_Rule, int]] = {}
    for rule in rules:
        hits = next(values)
        distinct = next(values) if rule.judged == "names" else 0
        if not hits:
            continue
        if rule.judged == "digits" and not (digits_only < HALF * present or hits >= HALF * digits_only):
            continue  # a column of numeric pseudonyms: the check digit passes by chance about 1 time in 11
        if rule.judged == "shaped" and not (shaped < HALF * present or hits >= HALF * present):
            continue  # a column of short codes: some look like postcodes by chance
        if rule.judged == "half" and hits < HALF * present:
            continue
        if rule.judged == "id" and not id_like:
            continue
        if rule.judged == "names" and (id_like or hits < HALF * present or distinct < MIN_DISTINCT_NAMES):
            continue
        if rule.kind not in found or found[rule.kind][1] < hits:
            found[rule.kind] = (rule, hits)
    if "NHS number" in found or "US ZIP code" in found or "social security number" in found:
        found.pop("phone number", None)  # 943 476 5919 and 10001-1234 are phone-shaped too
    return [Finding(file_name, label, kind, rule.rule, hits) for kind, (rule, hits) in found.items()]


# ---------------------------------------------------------------- the gate as ingest calls it


def check_relation(con: duckdb.DuckDBPyConnection, relation: str, table: str, file_name: str | None = None,
                   header: bool = True, values: bool = True) -> list[Finding]:
    """Header findings (names, types) then value findings for a relation read as contract table ``table``."""
    described = con.sql(f"select * from {relation} limit 0")
    columns, types = described.columns, [str(t) for t in described.types]
    file_name = file_name or table
    findings = check_header(table, file_name, columns, types) if header else []
    if values:
        labels = {c: printable_column(c, i) for i, c in enumerate(columns)}
        contract = TABLES.get(table)
        expected = {c.name for c in contract.columns} if contract else set()
        in_contract = [c for c in columns if c.strip().lower() in expected]
        extras = [c for c in columns if c.strip().lower() not in expected]
        findings += scan_table(con, relation, table, file_name, in_contract, labels)
        findings += scan_table(con, relation, table, file_name, extras, labels, extra=True)
    return findings


class IdentifierGate:
    """The gate as ingest calls it (``load_native(..., privacy_gate=refuse_if_identifiers)``).

    ``headers`` runs before anything is read past the header row; ``values``
    inside the load's transaction, once each table is parsed (a refusal rolls
    the transaction back: nothing is stored). Each raises ``PrivacyError`` with
    one line, or returns the (empty) findings.
    """

    def headers(self, con: duckdb.DuckDBPyConnection, files: Mapping[str, tuple[str, str]]) -> list[Finding]:
        """``files``: table -> (file name, SQL relation reading the file). Names and types only."""
        findings: list[Finding] = []
        for table, (file_name, relation) in files.items():
            described = con.sql(f"select * from {relation} limit 0")
            findings += check_header(table, file_name, described.columns, [str(t) for t in described.types])
        refuse(findings)
        return findings

    def values(self, con: duckdb.DuckDBPyConnection, table: str, file_name: str, parsed: str,
               file_relation: str | None = None, extra_columns: Sequence[str] = (),
               rejected_lines: str | None = None) -> list[Finding]:
        """Every value of the parsed table ``parsed`` (as text): the contract's columns and the
        file's ``extra_columns``, in one pass. Extra columns the parsed table does not hold are
        read from ``file_relation``. ``rejected_lines``: a DuckDB reject_errors table of the
        lines the CSV reader could not split; they are never stored, but an identifier in them
        is still an identifier in the extract."""
        contract = TABLES.get(table)
        parsed_columns = con.sql(f"select * from {parsed} limit 0").columns
        extras = [c for c in extra_columns if c in parsed_columns]
        columns = [c.name for c in contract.columns if c.name in parsed_columns] if contract else list(parsed_columns)
        # Labels by the column's place in the file ("column 3"), when the file is at hand.
        file_columns = con.sql(f"select * from {file_relation} limit 0").columns if file_relation else parsed_columns
        labels = {c: printable_column(c, i) for i, c in enumerate(file_columns)}
        findings = scan_table(con, parsed, table, file_name, columns + extras, labels, extra=extras)
        elsewhere = [c for c in extra_columns if c not in parsed_columns]
        if elsewhere and file_relation:
            findings += scan_table(con, file_relation, table, file_name, elsewhere, labels, extra=True)
        if rejected_lines:
            cells = (f"(select unnest(regexp_split_to_array(csv_line, '[,;\\t|]')) as \"unreadable lines\" "
                     f"from {rejected_lines})")
            findings += scan_table(con, cells, table, file_name, ["unreadable lines"], extra=True)
        refuse(findings)
        return findings

    def __call__(self, frames: Mapping[str, pd.DataFrame]) -> list[Finding]:
        """The whole gate over in-memory tables: refuse, or return []."""
        findings = check_tables(frames)
        refuse(findings)
        return findings


refuse_if_identifiers = IdentifierGate()

# ---------------------------------------------------------------- OMOP CDM

# OMOP CDM v5.4 columns of the clinical tables the OMOP loader reads
# (pipeline/ingest/omop.py); vocabulary tables are reference data about no one.
CDM_CLINICAL_COLUMNS: dict[str, frozenset[str]] = {name: frozenset(columns.split()) for name, columns in {
    "person": "person_id gender_concept_id year_of_birth month_of_birth day_of_birth birth_datetime race_concept_id"
              " ethnicity_concept_id location_id provider_id care_site_id person_source_value gender_source_value"
              " gender_source_concept_id race_source_value race_source_concept_id ethnicity_source_value"
              " ethnicity_source_concept_id",
    "observation_period": "observation_period_id person_id observation_period_start_date observation_period_end_date"
                          " period_type_concept_id",
    "death": "person_id death_date death_datetime death_type_concept_id cause_concept_id cause_source_value"
             " cause_source_concept_id",
    "drug_exposure": "drug_exposure_id person_id drug_concept_id drug_exposure_start_date drug_exposure_start_datetime"
                     " drug_exposure_end_date drug_exposure_end_datetime verbatim_end_date drug_type_concept_id"
                     " stop_reason refills quantity days_supply sig route_concept_id lot_number provider_id"
                     " visit_occurrence_id visit_detail_id drug_source_value drug_source_concept_id route_source_value"
                     " dose_unit_source_value",
    "condition_occurrence": "condition_occurrence_id person_id condition_concept_id condition_start_date"
                            " condition_start_datetime condition_end_date condition_end_datetime"
                            " condition_type_concept_id condition_status_concept_id stop_reason provider_id"
                            " visit_occurrence_id visit_detail_id condition_source_value condition_source_concept_id"
                            " condition_status_source_value",
    "observation": "observation_id person_id observation_concept_id observation_date observation_datetime"
                   " observation_type_concept_id value_as_number value_as_string value_as_concept_id"
                   " qualifier_concept_id unit_concept_id provider_id visit_occurrence_id visit_detail_id"
                   " observation_source_value observation_source_concept_id unit_source_value qualifier_source_value"
                   " value_source_value observation_event_id obs_event_field_concept_id",
    "measurement": "measurement_id person_id measurement_concept_id measurement_date measurement_datetime"
                   " measurement_time measurement_type_concept_id operator_concept_id value_as_number"
                   " value_as_concept_id unit_concept_id range_low range_high provider_id visit_occurrence_id"
                   " visit_detail_id measurement_source_value measurement_source_concept_id unit_source_value"
                   " unit_source_concept_id value_source_value measurement_event_id meas_event_field_concept_id",
}.items()}
# Free-text columns of those tables (besides every *_source_value).
CDM_TEXT_COLUMNS = frozenset({"value_as_string", "sig", "stop_reason", "lot_number"})


def check_cdm_table(con: duckdb.DuckDBPyConnection, cdm_table: str, label: str, relation: str) -> list[Finding]:
    """Findings in one CDM table as read: every ``*_source_value`` and free-text
    column by value, and any column outside CDM v5.4 by name, type and value."""
    standard = CDM_CLINICAL_COLUMNS.get(cdm_table)
    if standard is None:
        return []
    described = con.sql(f"select * from {relation} limit 0")
    columns, types = described.columns, [str(t) for t in described.types]
    labels = {c: printable_column(c, i) for i, c in enumerate(columns)}
    text = [c for c in columns if c.strip().lower().endswith("_source_value") or c.strip().lower() in CDM_TEXT_COLUMNS]
    others = [c for c in columns if c.strip().lower() not in standard]
    findings = name_findings(label, columns, types, standard, "the CDM")
    # one pass: the CDM's text columns and every column outside the CDM (judged as extra columns)
    findings += scan_table(con, relation, cdm_table, label, text + [c for c in others if c not in text], labels,
                           extra=others)
    return findings


def refuse_cdm_identifiers(con: duckdb.DuckDBPyConnection, tables: Mapping[str, tuple[str, str]]) -> list[Finding]:
    """The gate over an OMOP CDM: ``tables`` maps CDM table -> (label, SQL relation); raises
    ``PrivacyError`` (one line, no value) on any finding."""
    findings: list[Finding] = []
    for cdm_table, (label, relation) in tables.items():
        findings += check_cdm_table(con, cdm_table, label, relation)
    refuse(findings)
    return findings



def check_tables(frames: Mapping[str, pd.DataFrame]) -> list[Finding]:
    """The gate over in-memory tables (tests, notebooks): each DataFrame is read
    by DuckDB exactly as a file would be, every column as text."""
    con = duckdb.connect()
    findings: list[Finding] = []
    try:
        for table, frame in frames.items():
            text = frame.astype("string")
            con.register("_gate_frame", text)
            findings += check_relation(con, "_gate_frame", table)
            con.unregister("_gate_frame")
    finally:
        con.close()
    return findings


# ---------------------------------------------------------------- k-anonymity


def k_anonymity(
    con: duckdb.DuckDBPyConnection,
    table: str = "raw_persons",
    quasi_identifiers: tuple[str, ...] = ("birth_year", "sex", "region"),
    k: int = 11,
) -> dict[str, Any]:
    """How re-identifiable persons are on their quasi-identifiers (a warning,
    never a refusal). Quasi-identifiers missing from the table are skipped.

    ``smallest_group`` and ``persons_in_small_groups`` are exact counts, meant
    for the run log in the warehouse; publish ``share_in_small_groups`` and
    ``groups_below_k`` instead (the last-guard scan flags the exact counts).

    >>> con = duckdb.connect()
    >>> _ = con.execute("create table raw_persons as select range as person_id, 1950 + range % 3 as birth_year, "
    ...                 "case when range = 0 then 'X' else 'F' end as sex from range(100)")
    >>> k_anonymity(con, k=11)
    {'quasi_identifiers': ['birth_year', 'sex'], 'k': 11, 'persons': 100, 'groups': 4, 'smallest_group': 1, 'groups_below_k': 1, 'persons_in_small_groups': 1, 'share_in_small_groups': 0.01}
    """
    present = {row[0] for row in con.execute(f'describe "{table}"').fetchall()}
    used = [q for q in quasi_identifiers if q in present]
    if not used:
        return {"quasi_identifiers": [], "k": k, "persons": con.execute(f'select count(*) from "{table}"').fetchall()[0][0],
                "groups": 0, "smallest_group": None, "groups_below_k": 0, "persons_in_small_groups": 0,
                "share_in_small_groups": 0.0}
    keys = ", ".join(f'"{q}"' for q in used)
    persons, groups, smallest, below, in_small = con.execute(f"""
        with sized as (select count(*) as persons from "{table}" group by {keys})
        select coalesce(sum(persons), 0), count(*), min(persons),
               count(*) filter (where persons < $k), coalesce(sum(persons) filter (where persons < $k), 0)
        from sized""", {"k": k}).fetchall()[0]
    return {
        "quasi_identifiers": used, "k": k, "persons": int(persons), "groups": int(groups),
        "smallest_group": None if smallest is None else int(smallest), "groups_below_k": int(below),
        "persons_in_small_groups": int(in_small),
        "share_in_small_groups": round(in_small / persons, 4) if persons else 0.0,
    }
