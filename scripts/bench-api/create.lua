-- POST /v1/invoices with 3 line items.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{"currency":"EUR","customer":{"name":"Bench Customer","email":"bench@example.com"},"line_items":[{"description":"Consulting","quantity":"1.5","unit_amount":10000,"tax_rate":"20"},{"description":"Travel","quantity":3,"unit_amount":333,"tax_rate":"20"},{"description":"Book","quantity":1,"unit_amount":1999,"tax_rate":"7.5"}]}]]
