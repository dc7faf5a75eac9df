from tests.staff_matrix import StaffUrl

STAFF_URLS = {
    "accounts:properties": StaffUrl(),
    "accounts:units": StaffUrl(kwargs=lambda prop: {"property_id": prop.uuid}),
    "accounts:units-all": StaffUrl(query={"status": "low"}),
    "accounts:search": StaffUrl(query={"q": "U0"}),
}
